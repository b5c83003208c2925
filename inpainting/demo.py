"""The second half of `make demo`: inpaint a held-out sample photo with the demo model.

    python train.py --flagfile=configs/demo.cfg       # trains on the bundled sample photos
    python -m inpainting.demo --model_dir=runs/demo   # this module

It cuts a box out of a photo the model never saw in training, fills it, and writes one PNG:
masked input | filled | original | attention flow. Then it prints where the checkpoint, the
TensorBoard logs and the PNG are.
"""

import os

from absl import app, flags

FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_string("model_dir", "runs/demo", "Training directory of the demo run.")
    flags.DEFINE_integer("size", 256, "The held-out photo is resized so its short side has this "
                         "many pixels.")


def before_after(generator, photo_rgb, size):
    """The demo picture for one photo: masked | filled | original | flow, side by side (uint8 RGB).

    The hole is a centred box of a quarter of the image's area.
    """
    import cv2
    import numpy as np

    from inpainting.inference.inpainter import Inpainter

    height, width = photo_rgb.shape[:2]
    scale = size / min(height, width)
    rgb = cv2.resize(photo_rgb, (round(width * scale), round(height * scale)),
                     interpolation=cv2.INTER_AREA)
    height, width = rgb.shape[:2]
    mask = np.zeros([height, width], np.float32)
    mask[height // 4:height - height // 4, width // 4:width - width // 4] = 1.0
    result = Inpainter(generator)(rgb, mask)
    filled = np.clip(np.rint(result["filled"]), 0, 255).astype(np.uint8)
    hole = mask[..., None] > 0
    masked = np.where(hole, np.uint8(255), rgb)
    completed = np.where(hole, filled, rgb)
    gap = np.full([height, 4, 3], 255, np.uint8)
    return np.concatenate([masked, gap, completed, gap, rgb, gap, result["flow"]], axis=1)


def main(argv):
    del argv
    from inpainting import cli, imageio
    from inpainting.checkpoints import store
    from inpainting.data import sources

    with cli.user_errors():
        prefix = store.latest_prefix(FLAGS.model_dir)
        generator = store.load_generator(prefix)
        photo_path = sources.held_out_sample_paths()[0]
        picture = before_after(generator, imageio.read_image(photo_path).rgb, FLAGS.size)
        output = os.path.join(FLAGS.model_dir, f"demo_step{store.checkpoint_step(prefix)}.png")
        # The picture is a function of the checkpoint alone, so an existing one is the same image.
        imageio.write_image(output, picture[..., ::-1], overwrite=True)
        print(f"held-out photo: {photo_path} (never seen in training)")
        print(f"checkpoint:     {prefix}")
        print(f"TensorBoard:    tensorboard --logdir {FLAGS.model_dir}")
        print(f"before/after:   {output}  (masked | filled | original | attention flow)")


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    define_flags()
    app.run(main)
