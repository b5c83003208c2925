"""Every flag of `train.py`, one per `TrainConfig` field, all optional and readable from --flagfile.

    python train.py --flagfile=configs/places2.cfg [--model_dir=... more overrides]

The defaults are those of the released DeepFill models of the chosen --version (`TrainConfig`).
"""

import dataclasses
import types

from absl import flags

from inpainting.config import ATTENTIONS, PRECISIONS, PREPROCESSING, STRATEGIES, VERSIONS, TrainConfig

# The declared defaults: None where the value depends on --version (see VERSION_DEFAULTS).
_D = types.SimpleNamespace(**{field.name: field.default for field in dataclasses.fields(TrainConfig)})


def _size(value):
    return f"{value[0]}x{value[1]}"


def define_flags(flag_values=flags.FLAGS):
    """Defines the training flags on `flag_values` (absl's global FLAGS by default)."""
    # Where and what.
    flags.DEFINE_string("model_dir", _D.model_dir, "Directory for checkpoints, TensorBoard logs "
                        "(train/, validation/) and the resolved configuration. A run resumes "
                        "automatically from the latest checkpoint found here. One run at a time: "
                        "a second train.py with the same --model_dir is refused while the first "
                        "runs.", flag_values=flag_values)
    flags.DEFINE_string("dataset", _D.dataset, "Training images: flist:PATH (one image path per line), "
                        "folder:DIR (recursive; jpg, png, webp, bmp), tfds:NAME[/CONFIG] "
                        "(tensorflow-datasets, e.g. tfds:places365_small), or samples (photos bundled "
                        "with scikit-image; nothing is downloaded).", flag_values=flag_values)
    flags.DEFINE_string("validation_dataset", _D.validation_dataset, "Validation images, same forms as "
                        "--dataset (e.g. the original's second flist). Empty: the dataset's validation "
                        "split (tfds), the held-out photos (samples), or the first images of --dataset.", flag_values=flag_values)
    flags.DEFINE_string("data_dir", _D.data_dir, "tensorflow-datasets data directory (empty: TFDS's "
                        "default, ~/tensorflow_datasets).", flag_values=flag_values)
    flags.DEFINE_bool("download", _D.download, "Let tensorflow-datasets download and prepare a tfds: "
                      "dataset that is not prepared yet. Off: a missing dataset is an error that says "
                      "how to get it.", flag_values=flag_values)
    flags.DEFINE_enum("preprocess", _D.preprocess, list(PREPROCESSING), "crop: random crops of "
                      "--image_size (Places2, ImageNet; smaller images are scaled up first); resize: "
                      "the whole image resized (CelebA-HQ).", flag_values=flag_values)
    flags.DEFINE_bool("flip", _D.flip, "Random horizontal flips of training images.", flag_values=flag_values)
    flags.DEFINE_string("mask_dir", _D.mask_dir, "Folder of mask images (white = hole) to train and "
                        "validate with instead of random boxes.", flag_values=flag_values)
    # The network.
    flags.DEFINE_enum("version", _D.version, list(VERSIONS), "DeepFill version: v1 (contextual attention, "
                      "WGAN-GP global and local critics) or v2 (gated convolutions, SN-PatchGAN critic, "
                      "free-form masks). Flags marked 'per version' default to the released models' values "
                      "of the version.", flag_values=flag_values)
    flags.DEFINE_bool("guided", _D.guided, "v2 only: train a sketch-guided model, whose stage 1 also "
                      "takes an edge map of the hole; the edges are derived from each training image "
                      "(Canny, thresholds 100 and 200).", flag_values=flag_values)
    flags.DEFINE_integer("cnum", _D.cnum, "Base width of the generator (per version: 32 for v1, 48 "
                         "for v2).", flag_values=flag_values)
    flags.DEFINE_enum("padding", _D.padding, ["same", "reflect", "symmetric"], "Convolution padding: "
                      "same (zeros, as the released models) or mirror padding (reflect, symmetric).", flag_values=flag_values)
    flags.DEFINE_string("image_size", _size(_D.image_size), "Training image size, HxW or N; multiples "
                        "of 16. It fixes the global critic's input.", flag_values=flag_values)
    flags.DEFINE_string("box_size", _size(_D.box_size), "Size of the random hole box, HxW or N; "
                        "multiples of 16. It fixes the local critic's input.", flag_values=flag_values)
    flags.DEFINE_string("max_delta", _size(_D.max_delta), "The hole is the box minus a random 0.."
                        "max_delta/2 pixels on each side (HxW or N; 0 makes the hole the box).", flag_values=flag_values)
    flags.DEFINE_string("margins", _size(_D.margins), "Minimum distance from the box to the image "
                        "border (HxW or N).", flag_values=flag_values)
    flags.DEFINE_bool("free_form_masks", _D.free_form_masks, "Holes are the box's hole united with "
                      "random brush strokes, as DeepFill v2 trains (per version: off for v1, on for "
                      "v2).", flag_values=flag_values)
    flags.DEFINE_string("stroke_width", ",".join(map(str, _D.stroke_width)), "With --free_form_masks: "
                        "MIN,MAX, each brush stroke's width in pixels is a whole number in [MIN, MAX) "
                        "(the original's 12,40 are for 256x256 images).", flag_values=flag_values)
    # Optimisation.
    flags.DEFINE_integer("batch_size", _D.batch_size, "Global batch size, split across devices.", flag_values=flag_values)
    flags.DEFINE_integer("critic_steps", _D.critic_steps, "Critic updates per generator update, each "
                         "on its own batch and box (per version: 5 for v1, 1 for v2).", flag_values=flag_values)
    flags.DEFINE_float("learning_rate", _D.learning_rate, "Adam learning rate.", flag_values=flag_values)
    flags.DEFINE_float("beta1", _D.beta1, "Adam beta1.", flag_values=flag_values)
    flags.DEFINE_float("beta2", _D.beta2, "Adam beta2 (per version: 0.9 for v1, 0.999 for v2). One "
                       "Adam optimizer serves the generator and the critics, as in the original.",
                       flag_values=flag_values)
    flags.DEFINE_float("adam_epsilon", _D.adam_epsilon, "Adam epsilon (1e-8 as in the original).", flag_values=flag_values)
    flags.DEFINE_float("coarse_weight", _D.coarse_weight, "Weight of the coarse output in the L1 terms "
                       "(per version: 1.2 for v1, 1 for v2).", flag_values=flag_values)
    flags.DEFINE_float("l1_weight", _D.l1_weight, "v1: weight of the spatially discounted L1 on the "
                       "hole box.", flag_values=flag_values)
    flags.DEFINE_float("ae_weight", _D.ae_weight, "Weight of the L1 terms: v1, on the known region "
                       "(1.2); v2, on the whole image (1).", flag_values=flag_values)
    flags.DEFINE_float("gan_weight", _D.gan_weight, "Weight of the adversarial terms in the generator "
                       "loss (per version: 0.001 for v1, 1 for v2).", flag_values=flag_values)
    flags.DEFINE_float("global_gan_weight", _D.global_gan_weight, "v1: weight of the global critic "
                       "relative to the local one.", flag_values=flag_values)
    flags.DEFINE_float("gradient_penalty", _D.gradient_penalty, "v1: WGAN-GP lambda.", flag_values=flag_values)
    flags.DEFINE_float("discount_gamma", _D.discount_gamma, "v1: base of the spatial discounting mask "
                       "(1 disables discounting).", flag_values=flag_values)
    flags.DEFINE_float("ema_decay", _D.ema_decay, "Keep an exponential moving average of the "
                       "generator's weights, updated after each step with the decay min(ema_decay, (1 + "
                       "step) / (10 + step)) (0.999: about the last 1000 steps from step 10000 on, "
                       "fewer before; 0: none). Checkpoints then give the average as the generator "
                       "every tool loads (infer, export, evaluate, --init_checkpoint) and validation "
                       "shows it; the trained weights are kept for resuming.", flag_values=flag_values)
    # The run.
    flags.DEFINE_integer("max_steps", _D.max_steps, "Stop after this many generator updates (total, "
                         "counting the steps of earlier runs in --model_dir).", flag_values=flag_values)
    flags.DEFINE_float("max_minutes", _D.max_minutes, "Also stop (with a checkpoint) after this many "
                       "minutes of this run; 0: no time limit.", flag_values=flag_values)
    flags.DEFINE_integer("checkpoint_every", _D.checkpoint_every, "Save a checkpoint every N steps "
                         "(also at the end, on Ctrl-C and on SIGTERM).", flag_values=flag_values)
    flags.DEFINE_integer("keep_checkpoints", _D.keep_checkpoints, "Number of checkpoints kept.", flag_values=flag_values)
    flags.DEFINE_integer("summary_every", _D.summary_every, "Write TensorBoard scalars every N steps.", flag_values=flag_values)
    flags.DEFINE_integer("validation_every", _D.validation_every, "Write validation images and losses "
                         "every N steps.", flag_values=flag_values)
    flags.DEFINE_integer("validation_images", _D.validation_images, "Number of fixed validation images.", flag_values=flag_values)
    flags.DEFINE_integer("log_every", _D.log_every, "Console progress line every N steps.", flag_values=flag_values)
    flags.DEFINE_integer("seed", _D.seed, "Seed of the data order, crops, flips, boxes and penalty "
                         "weights; with the step it fixes the whole data stream, so a resumed run sees "
                         "the data an uninterrupted run would have seen.", flag_values=flag_values)
    flags.DEFINE_bool("deterministic", _D.deterministic, "Enable TensorFlow op determinism (bitwise "
                      "repeatable runs; slower on GPUs).", flag_values=flag_values)
    flags.DEFINE_string("init_checkpoint", _D.init_checkpoint, "Start from these weights (an original "
                        "DeepFill checkpoint or one of this project) when --model_dir has no checkpoint: "
                        "fine-tuning.", flag_values=flag_values)
    flags.DEFINE_enum("attention", _D.attention, list(ATTENTIONS), "Contextual-attention "
                      "implementation.", flag_values=flag_values)
    # Devices.
    flags.DEFINE_enum("strategy", _D.strategy, list(STRATEGIES), "auto: MultiWorkerMirroredStrategy "
                      "when the TF_CONFIG environment variable names more than one task, else "
                      "MirroredStrategy over all visible GPUs, or one device (GPU or CPU); mirrored: "
                      "MirroredStrategy over all visible GPUs or, without GPUs, the logical CPUs of "
                      "--cpu_devices; one_device; multi_worker: MultiWorkerMirroredStrategy over the "
                      "cluster of TF_CONFIG (every worker runs the same command with the same "
                      "--model_dir; see the README, Training on many machines).", flag_values=flag_values)
    flags.DEFINE_float("worker_timeout", _D.worker_timeout, "Multi-worker training: seconds a worker "
                       "waits for the others (start-up, each collective, heartbeats) before it stops "
                       "with an error saying one was lost.", flag_values=flag_values)
    flags.DEFINE_bool("shard_input", _D.shard_input, "Multi-worker training: each worker reads and "
                      "decodes only its share of the files (a different, equally random stream "
                      "than one process's); --noshard_input: each reads the whole single-process "
                      "stream and keeps its part of every global batch (the batches one process "
                      "trains on; input costs as much on every worker as on one process).",
                      flag_values=flag_values)
    flags.DEFINE_integer("cpu_devices", _D.cpu_devices, "Split the CPU into N logical devices (0: one); "
                         "with --strategy=mirrored this trains data-parallel on a CPU.", flag_values=flag_values)
    flags.DEFINE_enum("precision", _D.precision, list(PRECISIONS), "float32; mixed_bfloat16 (16-bit "
                      "convolutions with float32 weights, contextual attention and losses; for Ampere "
                      "and newer GPUs and CPUs with bfloat16 units); or mixed_float16 (the same in "
                      "float16, with dynamic loss scaling: an update whose gradients overflow is skipped "
                      "and halves the scale; for GPUs without bfloat16 such as T4 and V100).",
                      flag_values=flag_values)
    flags.DEFINE_bool("xla", _D.xla, "Compile the training steps with XLA (jit_compile).", flag_values=flag_values)


def config_from_flags(values=None):
    """The `TrainConfig` of the parsed flags (absl's FLAGS unless `values` is given)."""
    values = flags.FLAGS if values is None else values
    names = TrainConfig.__dataclass_fields__
    return TrainConfig(**{name: values[name].value for name in names})
