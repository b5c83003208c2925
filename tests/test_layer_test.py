"""Tests of the layer-test helper (tests/layer_test.py): it passes a correct layer and names each fault."""

import keras
import pytest
import tensorflow as tf

from layer_test import run_layer_test

PACKAGE = "layer_test"


@keras.saving.register_keras_serializable(package=PACKAGE)
class Affine(keras.layers.Layer):
    """x @ kernel + bias + offset: a correct layer."""

    def __init__(self, units, offset=0.0, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.offset = offset

    def build(self, input_shape):
        self.kernel = self.add_weight(name="kernel", shape=(input_shape[-1], self.units))
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="ones")

    def call(self, x):
        return tf.tensordot(x, self.kernel, 1) + self.bias + self.offset

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self):
        config = super().get_config()
        config.update(units=self.units, offset=self.offset)
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class ForgetsAnArgument(Affine):
    def get_config(self):
        config = super().get_config()
        del config["offset"]
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class StoresADefault(Affine):
    def get_config(self):
        config = super().get_config()
        config.update(offset=0.0)
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class WrongShape(Affine):
    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units + 1)


@keras.saving.register_keras_serializable(package=PACKAGE)
class UnusedWeight(Affine):
    def build(self, input_shape):
        super().build(input_shape)
        self.scale = self.add_weight(name="scale", shape=())


@keras.saving.register_keras_serializable(package=PACKAGE)
class ZeroGradient(UnusedWeight):
    def call(self, x):
        return super().call(x) + 0.0 * self.scale


@keras.saving.register_keras_serializable(package=PACKAGE)
class TracedDiffers(Affine):
    def call(self, x):
        return super().call(x) + (0.0 if tf.executing_eagerly() else 1.0)


@keras.saving.register_keras_serializable(package=PACKAGE)
class NotSaved(Affine):
    def save_own_variables(self, store):
        pass

    def load_own_variables(self, store):
        pass


class Unregistered(Affine):
    pass


def test_passes_a_correct_layer(tmp_path):
    layer = run_layer_test(Affine, {"units": 3, "offset": 0.5}, input_shapes=(2, 4, 5), tmp_path=tmp_path,
                           expected_output_shape=(2, 4, 3), expected_output_dtype="float32", package=PACKAGE)
    assert layer.built and layer.kernel.shape == (5, 3)


@pytest.mark.parametrize("layer_cls,message", [
    (ForgetsAnArgument, "ForgetsAnArgument.get_config.. lacks the argument 'offset'"),
    (StoresADefault, r"StoresADefault.get_config..\['offset'\] is 0.0, the layer was made with 0.5"),
    (WrongShape, r"compute_output_shape gives \(2, 4, 4\), the call \(2, 4, 3\)"),
    (UnusedWeight, "no gradient for unused_weight/scale"),
    (ZeroGradient, "the gradient of zero_gradient/scale is zero"),
    (TracedDiffers, "a tf.function call"),
    (NotSaved, "the loaded .keras model"),
    (Unregistered, r"serialised as .*: register it with "
                   r"@keras.saving.register_keras_serializable\(package='layer_test'\)"),
])
def test_names_the_fault(tmp_path, layer_cls, message):
    with pytest.raises(AssertionError, match=message):
        run_layer_test(layer_cls, {"units": 3, "offset": 0.5}, input_shapes=(2, 4, 5), tmp_path=tmp_path,
                       package=PACKAGE)


def test_checks_the_expected_shape_and_dtype(tmp_path):
    with pytest.raises(AssertionError, match="output shapes"):
        run_layer_test(Affine, {"units": 3}, input_shapes=(2, 4, 5), tmp_path=tmp_path,
                       expected_output_shape=(2, 4, 4), package=PACKAGE)
    with pytest.raises(AssertionError, match="float32"):
        run_layer_test(Affine, {"units": 3}, input_shapes=(2, 4, 5), tmp_path=tmp_path,
                       expected_output_dtype="float16", package=PACKAGE)
