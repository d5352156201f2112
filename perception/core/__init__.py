"""Pure numpy/cv2 building blocks: classes, frames, detections, boxes, decoding, colour maps."""
