"""Car detection with YOLO: Darknet import, decoding, video pipeline, training, evaluation."""
