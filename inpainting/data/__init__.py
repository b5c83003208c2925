"""Training and validation data: image sources, decoding, masks, edges and the tf.data pipelines."""
