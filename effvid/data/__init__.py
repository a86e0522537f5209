"""Video data pipeline: PyAV decoding, clip sampling, clip transforms, datasets."""

from .datasets import (BadSample, VideoClipDataset, VideoSample, build_dataset, collate_clips,
                       find_class_file, find_files, has_parts, has_split_folders,
                       is_something_annotations, read_class_file, read_kinetics_annotations,
                       read_list_file, read_samples,
                       read_something_annotations, read_split_folder, scan_class_folders,
                       split_folder_kind, split_key, stratified_split)
from .sampling import dense_indices, dense_test_clips, segment_bounds, segment_indices, test_clips
from .synthetic import (SYNTHETIC_CLASSES, decode_frame_index, index_pattern_frames,
                        make_synthetic_dataset, render_motion_clip)
from .transforms import (IMAGENET_MEAN, IMAGENET_STD, TestTransform, TrainTransform,
                         multi_scale_crop_params, normalize_clip, to_chw)
from .video import (VIDEO_EXTENSIONS, VideoDecodeError, VideoInfo, probe_video, read_all_frames,
                    read_frames, write_video)

__all__ = [
    # video
    "VIDEO_EXTENSIONS", "VideoDecodeError", "VideoInfo", "probe_video", "read_frames",
    "read_all_frames", "write_video",
    # sampling
    "segment_bounds", "segment_indices", "test_clips", "dense_indices", "dense_test_clips",
    # transforms
    "IMAGENET_MEAN", "IMAGENET_STD", "to_chw", "normalize_clip", "multi_scale_crop_params",
    "TrainTransform", "TestTransform",
    # datasets
    "VideoSample", "BadSample", "find_files", "has_parts", "has_split_folders", "scan_class_folders", "read_list_file", "split_key", "stratified_split",
    "read_class_file", "find_class_file", "read_something_annotations", "read_kinetics_annotations",
    "read_samples", "is_something_annotations", "split_folder_kind", "read_split_folder",
    "VideoClipDataset", "collate_clips", "build_dataset",
    # synthetic
    "SYNTHETIC_CLASSES", "render_motion_clip", "make_synthetic_dataset", "index_pattern_frames",
    "decode_frame_index",
]
