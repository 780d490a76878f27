"""The Keras tutorial's own ResNet-20 v1 (keras/examples/cifar10_resnet.py) timed on this machine: the model
resnetlab's CPU speed is compared with (benchmarks/README.md).

TensorFlow is not a resnetlab dependency; run this from a throwaway virtual environment:

    python3 -m venv /tmp/tf && /tmp/tf/bin/pip install tensorflow-cpu
    /tmp/tf/bin/python benchmarks/keras_tutorial.py --steps 60

The model is the tutorial's code, reproduced verbatim in tests/fixtures/keras/make_keras_fixtures.py; training is
the tutorial's: Adam 1e-3, categorical cross-entropy, batch 32, with and without its ImageDataGenerator. By
default that is the tutorial's own generator (rotations of up to 20 degrees, shifts of up to 20 %, horizontal
flips, nearest fill: ``--augmentation tutorial``); ``--augmentation example`` is the 2020 cifar10_resnet.py
example's (shifts of 10 %, flips). Images are synthetic (speed does not depend on their content).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "keras"))


GENERATORS = {
    "tutorial": {"rotation_range": 20, "width_shift_range": 0.2, "height_shift_range": 0.2, "horizontal_flip": True,
                 "fill_mode": "nearest"},
    "example": {"width_shift_range": 0.1, "height_shift_range": 0.1, "horizontal_flip": True},
}


def images_per_second(run, images: int) -> float:
    start = time.perf_counter()
    run()
    return images / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60, help="timed batches per measurement")
    parser.add_argument("--warmup", type=int, default=10, help="untimed batches first (graph tracing)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--inference-batch-sizes", default="32,128")
    parser.add_argument("--augmentation", choices=sorted(GENERATORS), default="tutorial",
                        help="the ImageDataGenerator timed (default: the tutorial's)")
    args = parser.parse_args()

    import tensorflow as tf
    from keras.optimizers import Adam
    from make_keras_fixtures import resnet_v1
    from tensorflow.keras.preprocessing.image import ImageDataGenerator

    rng = np.random.default_rng(0)
    count = args.batch_size * args.steps
    x = rng.integers(0, 256, (count, 32, 32, 3)).astype("float32") / 255
    x -= x.mean(axis=0)  # the tutorial's pixel-mean subtraction
    y = np.eye(10, dtype="float32")[rng.integers(0, 10, count)]
    model = resnet_v1((32, 32, 3), 20)
    model.compile(loss="categorical_crossentropy", optimizer=Adam(learning_rate=1e-3), metrics=["accuracy"])
    warm = args.batch_size * args.warmup
    model.fit(x[:warm], y[:warm], batch_size=args.batch_size, epochs=1, verbose=0)

    results = {"tensorflow": tf.__version__, "threads": [tf.config.threading.get_intra_op_parallelism_threads(),
                                                         tf.config.threading.get_inter_op_parallelism_threads()],
               "batch_size": args.batch_size, "steps": args.steps, "augmentation": GENERATORS[args.augmentation]}
    results["train_no_augmentation"] = images_per_second(
        lambda: model.fit(x, y, batch_size=args.batch_size, epochs=1, shuffle=True, verbose=0), count)
    generator = ImageDataGenerator(**GENERATORS[args.augmentation])
    model.fit(generator.flow(x[:warm], y[:warm], batch_size=args.batch_size), epochs=1, verbose=0)
    results["train_augmented"] = images_per_second(
        lambda: model.fit(generator.flow(x, y, batch_size=args.batch_size), epochs=1, verbose=0), count)
    for batch in (int(b) for b in args.inference_batch_sizes.split(",")):
        model.predict(x[: batch * 2], batch_size=batch, verbose=0)
        results[f"inference_b{batch}"] = images_per_second(
            lambda batch=batch: model.predict(x, batch_size=batch, verbose=0), count)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
