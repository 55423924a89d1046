"""Video re-ID data: readers of tracklet datasets (MARS, DukeMTMC-VideoReID, iLIDS-VID, PRID2011
multi-shot) registered by name in the video registry (``get_video_dataset``), beside the image
one. Records: ``fedfr.reid.data.records.Tracklet`` / ``VideoSplit``."""

from fedfr.reid.data.video.registry import (
    get_video_dataset,
    list_video_datasets,
    register_video_dataset,
)

__all__ = ["get_video_dataset", "list_video_datasets", "register_video_dataset"]
