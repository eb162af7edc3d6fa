"""Tiny Keras models for the Keras tests, made in a child process (TensorFlow stays out of pytest).

``python -m tests.keras.make_models DIR`` writes, from fixed seeds (a few hundred parameters
each): the CIFAR-10-style CNN (``Conv2D``/``MaxPooling2D``/``Flatten``/``Dense``, softmax
head, channels-last ``(8, 8, 3)`` input) as ``cnn.keras``, ``cnn.h5`` and the SavedModel
directory ``cnn_savedmodel/``; a functional ``keras.Model(inputs, outputs)`` compiled with
Adam as ``functional.keras`` and ``functional.h5``; a weights-only ``weights.h5``; the example
and validation batches (``*_example.npz``, ``*_val.npz``) and ``model.predict``'s answers on
the validation rows (``*_predict.npz``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np


def main(out: Path) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ["KERAS_BACKEND"] = "tensorflow"
    import keras

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    cnn = keras.Sequential([
        keras.Input((8, 8, 3)),
        keras.layers.Conv2D(4, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dense(10, activation="softmax"),
    ])
    cnn.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x = rng.random((64, 8, 8, 3), dtype=np.float32)
    cnn.fit(x, rng.integers(0, 10, 64), epochs=1, verbose=0)
    cnn.save(out / "cnn.keras")
    cnn.save(out / "cnn.h5")
    cnn.export(out / "cnn_savedmodel", verbose=False)
    cnn.save_weights(out / "weights.weights.h5")
    os.replace(out / "weights.weights.h5", out / "weights.h5")
    np.savez(out / "cnn_example.npz", x=x[:4])
    np.savez(out / "cnn_val.npz", x=x[:32])
    np.savez(out / "cnn_predict.npz", y=cnn.predict(x[:32], verbose=0))

    features = keras.Input((6,), name="features")
    hidden = keras.layers.Dense(8, activation="relu")(features)
    probs = keras.layers.Dense(3, activation="softmax", name="probs")(hidden)
    functional = keras.Model(features, probs)
    functional.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy")
    f = rng.standard_normal((64, 6)).astype(np.float32)
    functional.save(out / "functional.keras")
    functional.save(out / "functional.h5")
    np.savez(out / "functional_example.npz", features=f[:4])
    np.savez(out / "functional_val.npz", features=f[:32])
    np.savez(out / "functional_predict.npz", y=functional.predict(f[:32], verbose=0))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
