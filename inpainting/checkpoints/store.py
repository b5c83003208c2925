"""Checkpoint directories of this project: `model_config.json` beside a TF2 checkpoint.

Training writes them (with optimizers and step), `python -m inpainting.checkpoints.convert` converts original
checkpoints into them, and every tool reads them. The generator is stored under the checkpoint
key `generator` and the critics under `critics`; training with `--ema_decay` stores the average of
the generator's weights as `generator` and the trained weights as `trained_generator`.
"""

import os

import tensorflow as tf

from inpainting.checkpoints import tf1
from inpainting.checkpoints.reading import DAMAGED_ERRORS, damaged_error, missing_files
from inpainting.config import CONFIG_FILE, ModelConfig
from inpainting.errors import CheckpointError

CHECKPOINT_NAME = "ckpt"


def save(directory, generator, critics=None, overwrite=False, step=0):
    """Writes `generator` (and `critics`) with their config into `directory`.

    Args:
        directory: the checkpoint directory (created if missing).
        generator: a built `Generator`.
        critics: built `Critics` or None.
        overwrite: allow writing where a checkpoint already exists.
        step: the number in the checkpoint's name (`ckpt-<step>`).

    Returns:
        The checkpoint prefix written.

    Raises:
        CheckpointError: `directory` already holds a checkpoint and `overwrite` is False.
    """
    directory = os.fspath(directory)
    if not overwrite and (tf.train.latest_checkpoint(directory)
                          or os.path.exists(os.path.join(directory, CONFIG_FILE))):
        raise CheckpointError(f"{directory} already holds a checkpoint; choose another directory or "
                              "pass {parameter} to replace it", parameter="overwrite")
    generator.config.save(directory)
    objects = {"generator": generator}
    if critics is not None:
        objects["critics"] = critics
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(**objects), directory, max_to_keep=1,
                                         checkpoint_name=CHECKPOINT_NAME)
    return manager.save(checkpoint_number=step)


def our_checkpoint(path):
    """(directory, prefix) if `path` is one of our checkpoint directories or prefixes, else None."""
    path = os.fspath(path)
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, CONFIG_FILE)):
        prefix = tf.train.latest_checkpoint(path)
        if prefix is None:
            named = _named_by_state_file(path)
            missing = named and missing_files(named)
            if missing:
                raise CheckpointError(f"{path}: {missing}; or give one of them as the checkpoint prefix")
            raise CheckpointError(f"{path} has a {CONFIG_FILE} but no checkpoint yet")
        return path, prefix
    directory = os.path.dirname(path) or "."
    if os.path.isfile(path + ".index") and os.path.isfile(os.path.join(directory, CONFIG_FILE)):
        return directory, path
    return None


def _named_by_state_file(directory):
    """The prefix the `checkpoint` state file of `directory` names (its files may be missing), or None."""
    try:
        state = tf.train.get_checkpoint_state(directory)
    except Exception:  # noqa: BLE001 - an unreadable state file names nothing
        return None
    if state is None or not state.model_checkpoint_path:
        return None
    return os.path.join(directory, os.path.basename(state.model_checkpoint_path))


def latest_prefix(directory):
    """The latest checkpoint prefix of one of our checkpoint directories."""
    found = our_checkpoint(directory)
    if found is None:
        raise CheckpointError(f"{directory} is not a checkpoint directory of this project (no "
                              f"{CONFIG_FILE} and checkpoint found)")
    return found[1]


def checkpoint_step(prefix):
    """The number in a checkpoint prefix (`.../ckpt-500` -> 500); -1 for None (no checkpoint)."""
    return int(os.fspath(prefix).rsplit("-", 1)[1]) if prefix else -1


def load_generator(path, attention="matmul", flow_dtype="float64", attention_memory_mb=None):
    """Loads a generator from a checkpoint directory of this project or an original checkpoint.

    Args:
        path: a checkpoint directory (its latest checkpoint is used), a checkpoint prefix inside one
            (`.../ckpt-5000`), or an original DeepFill TF1 checkpoint folder or prefix.
        attention: contextual-attention implementation, "matmul" or "patches".
        flow_dtype: "float64" or "float32" flow colouring.
        attention_memory_mb: memory budget of contextual attention (see `Generator`), or None.

    Returns:
        A built `Generator`.

    Raises:
        CheckpointError, ConfigError: nothing loadable at `path`.
    """
    return _load(path, False, attention=attention, flow_dtype=flow_dtype,
                 attention_memory_mb=attention_memory_mb)[0]


def load_networks(path, attention="matmul", flow_dtype="float64", attention_memory_mb=None):
    """Loads a generator and the critics stored with it, from either kind of checkpoint.

    Args: those of `load_generator`.

    Returns:
        (a built `Generator`, its built critics, `Critics` or `SNPatchGAN` by the version, or
        None when the checkpoint holds none).

    Raises:
        CheckpointError, ConfigError: nothing loadable at `path`.
    """
    return _load(path, True, attention=attention, flow_dtype=flow_dtype,
                 attention_memory_mb=attention_memory_mb)


def _load(path, with_critics, **generator_options):
    """(generator, critics or None) of `path`; the critics only `with_critics`."""
    from inpainting.model.critics import make_critics
    from inpainting.model.generator import Generator

    found = our_checkpoint(path)
    if found is None:
        variables = tf1.read_variables(path)
        tf1.check_version(variables, None, path)
        generator = tf1.build_generator(variables, path, **generator_options)
        has_critics = with_critics and tf1.has_critics(variables)
        return generator, tf1.build_critics(variables, path) if has_critics else None
    directory, prefix = found
    config = ModelConfig.load(directory)
    shapes = _stored_shapes(prefix)
    _check_generator_shapes(shapes, prefix, config, os.path.join(directory, CONFIG_FILE))
    generator = Generator(config, **generator_options)
    generator.build()
    objects = {"generator": generator}
    if with_critics and "critics" in stored_objects(prefix):
        objects["critics"] = make_critics(config)
        objects["critics"].build()
    try:
        status = tf.train.Checkpoint(**objects).restore(prefix).expect_partial()
        status.assert_existing_objects_matched()
    except DAMAGED_ERRORS as err:
        raise damaged_error(prefix, err) from None
    except (AssertionError, ValueError, tf.errors.OpError) as err:
        raise CheckpointError(f"{prefix}: cannot restore the {' and '.join(objects)} described by "
                              f"{os.path.join(directory, CONFIG_FILE)} "
                              f"({str(err).splitlines()[0]})") from None
    return generator, objects.get("critics")


def stored_objects(prefix):
    """The names of the objects a TF2 checkpoint at `prefix` holds ("generator", "critics",
    "optimizer", ...); empty for an unreadable one (a restore reports it).

    Read from its object graph, not from the variable keys: a variable reachable along several
    paths is keyed by one of them only (a critic's weights, which the optimizer also tracks, can
    be keyed under "optimizer/").
    """
    from tensorflow.core.protobuf import trackable_object_graph_pb2

    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    try:
        graph.ParseFromString(tf.train.load_checkpoint(prefix).get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
    except Exception:  # noqa: BLE001 - any unreadable checkpoint
        return set()
    return {child.local_name for child in graph.nodes[0].children} if graph.nodes else set()


def _stored_shapes(prefix):
    """{variable key: shape} of the checkpoint at `prefix`; {} for an unreadable index (the
    restore reports it)."""
    try:
        return tf.train.load_checkpoint(prefix).get_variable_to_shape_map()
    except Exception:  # noqa: BLE001 - any unreadable index
        return {}


def _describe(version, cnum, guided):
    return f"{'a guided' if guided else 'a'} {version} generator (cnum {cnum})"


def _check_generator_shapes(shapes, prefix, config, config_path):
    """Raises CheckpointError when the generator stored at `prefix` (its `_stored_shapes`) is not
    the one `config` describes.

    Checked before restoring: a failed restore makes TensorFlow log a warning for every value it
    could not place. Version, width and sketch input are read from the first convolutions.
    """
    conv1 = shapes.get("generator/conv1/kernel/.ATTRIBUTES/VARIABLE_VALUE")
    xconv1 = shapes.get("generator/xconv1/kernel/.ATTRIBUTES/VARIABLE_VALUE")
    if conv1 is None or xconv1 is None or len(conv1) != 4 or len(xconv1) != 4:
        return  # not a generator of this project's layout: the restore reports it
    # v2's stage 2 takes the 3-channel pasted image, v1's 5 channels; a guided v2 stage 1 takes 6.
    found = ("v2" if xconv1[2] == 3 else "v1", int(conv1[3]), conv1[2] == 6)
    if found != (config.version, config.cnum, config.guided):
        raise CheckpointError(f"{prefix} holds {_describe(*found)} but {config_path} describes "
                              f"{_describe(config.version, config.cnum, config.guided)}; correct "
                              f"version, cnum or guided in {CONFIG_FILE}, or use the folder the "
                              "checkpoint came from")
