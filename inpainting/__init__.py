"""DeepFill generative image inpainting (v1, CVPR 2018) in TensorFlow 2 / Keras 3."""
