"""Video data pipeline: PyAV decoding, clip sampling, clip transforms, datasets."""

from .datasets import (BadSample, VideoClipDataset, build_dataset, collate_clips, has_parts,
                       has_split_folders, scan_class_folders, split_key, stratified_split)
from .files import MissingVideo, VideoSample, find_files
from .lists import find_class_file, read_class_file, read_list_file
from .published import (is_something_annotations, read_kinetics_annotations, read_samples,
                        read_something_annotations, read_split_folder, split_folder_kind)
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
    "BadSample", "has_parts", "has_split_folders", "scan_class_folders", "split_key", "stratified_split",
    "VideoClipDataset", "collate_clips", "build_dataset",
    # files
    "VideoSample", "MissingVideo", "find_files",
    # lists
    "read_class_file", "find_class_file", "read_list_file",
    # published
    "read_something_annotations", "read_kinetics_annotations", "read_samples", "is_something_annotations",
    "split_folder_kind", "read_split_folder",
    # synthetic
    "SYNTHETIC_CLASSES", "render_motion_clip", "make_synthetic_dataset", "index_pattern_frames",
    "decode_frame_index",
]
