"""The MOST network: encoder, alignment, decoder and task heads, built from a space or an Architecture."""
from .geometry import (flow_from_homography, homography_from_offsets, image_corners, motion_to_flow,
                       pixel_centres, rescale_output, warp)
from .network import MostNet, build_network

__all__ = ["MostNet", "build_network", "flow_from_homography", "homography_from_offsets",
           "image_corners", "motion_to_flow", "pixel_centres", "rescale_output", "warp"]
