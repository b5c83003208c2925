"""Inpainting images with a trained model: whole images, streamed large images, --hr modes, and runners."""
