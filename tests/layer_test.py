"""One call that checks what every Keras layer (or model) of the package must do.

    from layer_test import run_layer_test

    run_layer_test(Conv, {"filters": 4, "kernel_size": 3}, input_shapes=(2, 8, 8, 3), tmp_path=tmp_path)

builds the layer on the input and checks, in order:

- its config: every argument of `__init__` is in `get_config()`, with the value it was given;
  the config is JSON-serialisable; `from_config(get_config())` has the same config and, with
  the same weights, gives identical outputs;
- `keras.saving.serialize_keras_object` names it `inpainting>ClassName`, and the object
  `deserialize_keras_object` rebuilds from the JSON text has the same config and outputs;
- a `.keras` file of a functional model around the layer loads (without custom objects) into a
  model with identical outputs;
- eager and `tf.function` calls agree;
- the outputs' shapes are those of `compute_output_shape` (where the layer implements it) and
  their dtypes are the expected ones (float outputs: the layer's compute dtype);
- one SGD step: every trainable weight (and every input named in `differentiable_inputs`)
  gets a finite, non-zero gradient, the same in a `tf.function` as eagerly, and the step
  changes the weight and leaves it finite.

Layers with state that a call updates (a spectral norm's power-iteration vector) are compared
from the same state: the weights are restored before every call that is compared.
"""

import contextlib
import inspect
import json

import keras
import numpy as np
import tensorflow as tf

PACKAGE = "inpainting"  # the layers' `register_keras_serializable` package


def _plain(value):
    """`value` as JSON would give it back: tuples as lists, configs (with `to_dict`) as dicts."""
    if isinstance(value, tf.TensorShape):
        value = value.as_list()
    if hasattr(value, "to_dict"):
        value = value.to_dict()
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def _random_inputs(shapes, seed):
    """Uniform [-1, 1] float32 tensors of a structure of shapes (None stays None)."""
    rng = np.random.default_rng(seed)

    def make(shape):
        return None if shape is None else tf.constant(rng.uniform(-1, 1, shape), tf.float32)

    if isinstance(shapes, tuple) and all(isinstance(v, int) for v in shapes):
        return make(shapes)
    return [make(tuple(shape)) if shape is not None else None for shape in shapes]


def _tensors(inputs):
    return tf.nest.map_structure(lambda x: None if x is None else tf.convert_to_tensor(x), inputs)


def _flat(structure):
    return [x for x in tf.nest.flatten(structure) if x is not None]


def _numpy(structure):
    return tf.nest.map_structure(lambda x: np.asarray(x), structure)


def _assert_identical(actual, expected, what):
    tf.nest.assert_same_structure(actual, expected)
    for a, e in zip(tf.nest.flatten(_numpy(actual)), tf.nest.flatten(_numpy(expected))):
        assert a.dtype == e.dtype and a.shape == e.shape, f"{what}: {a.dtype}{a.shape} != {e.dtype}{e.shape}"
        np.testing.assert_array_equal(a, e, err_msg=what)


def _assert_close(actual, expected, rtol, what):
    """Every value within `rtol` of the largest magnitude of its expected tensor (integers exact)."""
    tf.nest.assert_same_structure(actual, expected)
    for a, e in zip(tf.nest.flatten(_numpy(actual)), tf.nest.flatten(_numpy(expected))):
        assert a.dtype == e.dtype and a.shape == e.shape, f"{what}: {a.dtype}{a.shape} != {e.dtype}{e.shape}"
        if tf.as_dtype(e.dtype).is_floating:
            a, e = a.astype(np.float64), e.astype(np.float64)
            scale = max(float(np.abs(e).max(initial=0)), 1e-6)
            np.testing.assert_allclose(a, e, rtol=0, atol=rtol * scale, err_msg=what)
        else:
            np.testing.assert_array_equal(a, e, err_msg=what)


def _call(layer, weights, inputs):
    """`layer(inputs)` from the weights `weights` (a `get_weights()` list)."""
    layer.set_weights(weights)
    return layer(inputs)


def _shapes(structure):
    return tf.nest.map_structure(lambda x: None if x is None else tuple(x.shape), structure)


def _implements(layer, method):
    """Whether a class outside Keras defines `method` for `layer`."""
    return any(method in vars(cls) for cls in type(layer).__mro__
               if cls.__module__.split(".")[0] not in ("keras", "tensorflow", "tf_keras", "builtins"))


def _check_config(layer_cls, layer, init_kwargs):
    config = layer.get_config()
    json.dumps(config)  # plain values only
    for name, parameter in inspect.signature(layer_cls.__init__).parameters.items():
        if name != "self" and parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            assert name in config, f"{layer_cls.__name__}.get_config() lacks the argument {name!r}"
    for name, value in init_kwargs.items():
        assert name in config, f"{layer_cls.__name__}.get_config() lacks the argument {name!r}"
        if name == "dtype":  # a policy's name, stored as the policy's config
            assert keras.dtype_policies.get(config[name]).name == keras.dtype_policies.get(value).name, config[name]
            continue
        assert _plain(config[name]) == _plain(value), (
            f"{layer_cls.__name__}.get_config()[{name!r}] is {config[name]!r}, the layer was made with {value!r}")
    clone = layer_cls.from_config(config)
    assert type(clone) is layer_cls
    assert clone.get_config() == config, f"{layer_cls.__name__}.from_config(get_config()) changes the config"
    return clone


def _check_serialization(layer_cls, layer, package):
    serialized = keras.saving.serialize_keras_object(layer)
    assert serialized["registered_name"] == f"{package}>{layer_cls.__name__}", (
        f"{layer_cls.__name__} is serialised as {serialized['registered_name']!r}: register it with "
        f"@keras.saving.register_keras_serializable(package={package!r})")
    restored = keras.saving.deserialize_keras_object(json.loads(json.dumps(serialized)))
    assert type(restored) is layer_cls, type(restored)
    assert _plain(restored.get_config()) == _plain(layer.get_config())
    return restored


def _functional_model(layer, inputs):
    """A functional model around `layer`: one `keras.Input` (batch size free) per input tensor."""
    symbols = tf.nest.map_structure(
        lambda x: None if x is None else keras.Input(shape=x.shape[1:], dtype=x.dtype.name), inputs)
    return keras.Model(_flat(symbols), layer(symbols))


def _check_gradients(layer, weights, inputs, differentiable_inputs, seed, rtol, traced):
    """One SGD step on sum(outputs * fixed random weights): gradients finite and non-zero."""
    flat_inputs = tf.nest.flatten(inputs)
    watched = [flat_inputs[i] for i in differentiable_inputs]
    assert layer.trainable_weights or watched, (
        f"{layer.name} has no trainable weights: name the inputs whose gradient to check")
    rng = np.random.default_rng(seed + 1)
    outputs = layer(inputs)  # the structure only (the weights are restored below)
    projections = [tf.constant(rng.normal(size=x.shape), x.dtype) if x.dtype.is_floating else None
                   for x in tf.nest.flatten(outputs)]

    def gradients(*watched):
        with tf.GradientTape() as tape:
            tape.watch(list(watched))
            feed = list(flat_inputs)
            for i, x in zip(differentiable_inputs, watched):
                feed[i] = x
            outputs = tf.nest.flatten(layer(tf.nest.pack_sequence_as(inputs, feed)))
            loss = tf.add_n([tf.reduce_sum(tf.cast(y, tf.float32) * tf.cast(p, tf.float32))
                             for y, p in zip(outputs, projections) if p is not None])
        return tape.gradient(loss, [*layer.trainable_weights, *watched])

    layer.set_weights(weights)
    eager = gradients(*watched)
    layer.set_weights(weights)
    graph = tf.function(gradients)(*watched) if traced else eager
    names = [w.path for w in layer.trainable_weights] + [f"input {i}" for i in differentiable_inputs]
    for name, e, g in zip(names, eager, graph):
        assert e is not None and g is not None, f"no gradient for {name}"
        e, g = np.asarray(e), np.asarray(g)
        assert np.all(np.isfinite(e)) and np.all(np.isfinite(g)), f"the gradient of {name} is not finite"
        assert np.abs(e).max() > 0, f"the gradient of {name} is zero"
        _assert_close(g, e, max(rtol, 1e-4), f"the gradient of {name} in a tf.function")

    layer.set_weights(weights)
    before = [np.array(w) for w in layer.trainable_weights]
    optimizer = keras.optimizers.SGD(learning_rate=0.01)
    optimizer.apply(list(graph[:len(before)]), layer.trainable_weights)
    for weight, old in zip(layer.trainable_weights, before):
        new = np.asarray(weight)
        assert np.all(np.isfinite(new)), f"{weight.path} is not finite after a step"
        assert np.abs(new - old).max() > 0, f"a step does not change {weight.path}"
    layer.set_weights(weights)


def run_layer_test(layer_cls, init_kwargs, inputs=None, *, input_shapes=None, tmp_path,
                   expected_output_shape=None, expected_output_dtype=None, differentiable_inputs=(),
                   function_rtol=1e-5, traced_gradients=True, seed=0, package=PACKAGE):
    """Builds `layer_cls(**init_kwargs)` on `inputs` and checks its configs, saving, calls and training.

    Args:
        layer_cls: a Keras layer (or model) class of the package, registered for serialisation.
        init_kwargs: the constructor's arguments.
        inputs: the call's input: an array, or a list of arrays (None items are passed as None).
        input_shapes: instead of `inputs`: a shape or a list of shapes (None items stay None) of
            uniform [-1, 1] float32 inputs.
        tmp_path: a folder for the `.keras` file (pytest's `tmp_path`).
        expected_output_shape: the outputs' shapes (a structure like the outputs), checked too.
        expected_output_dtype: the outputs' dtypes: one for every output, or a structure like
            the outputs. None: floating outputs have the layer's compute dtype.
        differentiable_inputs: indices (in the flattened inputs) of inputs whose gradient must
            be finite and non-zero too (required for a layer without trainable weights).
        function_rtol: tolerance of the `tf.function` call against the eager one, relative to the
            largest magnitude of each output (graph rewrites may fuse operations); the gradients
            are compared within the larger of this and 1e-4.
        traced_gradients: also compute the gradients in a `tf.function` (as training does) and
            compare them with the eager ones; False saves the tracing where another test covers it.
        seed: seed of the weights and of the random inputs.
        package: the package the class is registered in (`register_keras_serializable`).

    Returns:
        The built layer (with its weights as they were after the first call).
    """
    assert (inputs is None) != (input_shapes is None), "give inputs or input_shapes"
    inputs = _tensors(_random_inputs(input_shapes, seed) if inputs is None else inputs)
    tf.keras.utils.set_random_seed(seed)
    layer = layer_cls(**init_kwargs)
    layer(inputs)
    assert layer.built, f"{layer.name} is not built after a call"
    weights = layer.get_weights()
    expected = _numpy(_call(layer, weights, inputs))

    # Configs and serialisation: same config, and the same outputs from the same weights.
    clone = _check_config(layer_cls, layer, init_kwargs)
    clone(inputs)
    _assert_identical(_call(clone, weights, inputs), expected, "from_config(get_config())")
    restored = _check_serialization(layer_cls, layer, package)
    restored(inputs)
    _assert_identical(_call(restored, weights, inputs), expected, "deserialize_keras_object")

    # A .keras file of a model holding the layer.
    model = _functional_model(layer, inputs)
    layer.set_weights(weights)
    path = tmp_path / f"{layer_cls.__name__}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    loaded_layer = loaded.get_layer(layer.name)
    assert type(loaded_layer) is layer_cls
    assert _plain(loaded_layer.get_config()) == _plain(layer.get_config())
    _assert_identical(loaded(_flat(inputs)), _call(model, weights, _flat(inputs)), "the loaded .keras model")
    _assert_identical(_call(model, weights, _flat(inputs)), expected, "the functional model")

    # Eager and traced calls.
    layer.set_weights(weights)
    traced = tf.function(lambda x: layer(x))(inputs)
    _assert_close(traced, expected, function_rtol, "a tf.function call")

    # Shapes and dtypes.
    shapes = _shapes(expected)
    if _implements(layer, "compute_output_shape"):
        computed = layer.compute_output_shape(_shapes(inputs))
        assert _plain(computed) == _plain(shapes), f"compute_output_shape gives {computed}, the call {shapes}"
    if expected_output_shape is not None:
        assert _plain(shapes) == _plain(expected_output_shape), f"output shapes {shapes}"
    dtypes = tf.nest.map_structure(lambda x: x.dtype.name, expected)
    if expected_output_dtype is None:
        for dtype in tf.nest.flatten(dtypes):
            assert not tf.as_dtype(dtype).is_floating or dtype == layer.compute_dtype, dtypes
    elif isinstance(expected_output_dtype, str):
        assert set(tf.nest.flatten(dtypes)) == {expected_output_dtype}, dtypes
    else:
        assert dtypes == expected_output_dtype, dtypes

    _check_gradients(layer, weights, inputs, tuple(differentiable_inputs), seed, function_rtol,
                     traced_gradients)
    return layer


@contextlib.contextmanager
def global_policy(name):
    """Inside the block, layers are made with the Keras dtype policy `name` (e.g. "mixed_bfloat16")."""
    saved = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(saved)
