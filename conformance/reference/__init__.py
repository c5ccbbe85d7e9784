"""TensorFlow references, one module per family, written independently of mlxnote: Keras
or tf.nn built-ins where they exist, otherwise TF code written from the documentation."""
