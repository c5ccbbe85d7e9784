"""TensorFlow references, one module per family, written independently of mlxnote: Keras
or tf.nn built-ins where they exist, otherwise TF code written from the documentation.

The references run on the CPU, with TF32 off: on a machine with an NVIDIA GPU (the CUDA
check, ``scripts/cuda_check.sh``) a GPU build of TensorFlow would otherwise take the GPU's
memory from MLX and run its float32 matmuls and convolutions in TF32."""

import tensorflow as tf

try:
    tf.config.set_visible_devices([], "GPU")
except (RuntimeError, ValueError):  # pragma: no cover  (TF's devices already initialized)
    pass
tf.config.experimental.enable_tensor_float_32_execution(False)
