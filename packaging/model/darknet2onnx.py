#!/usr/bin/env python3
"""Convert a Darknet YOLO network (.cfg + .weights) into an ONNX model for edgecam.

The result has one input, ``images`` (float32 [1, 3, S, S]: RGB, values scaled to
0..1, letterboxed by the caller), and one output per ``[yolo]`` layer in cfg
order: the raw output of the convolution that feeds that layer, named by its
stride (``stride32`` [1, 255, S/32, S/32], ``stride16`` ...). YOLO decoding
(sigmoids, anchors, NMS) is left to the consumer; the anchors and class names it
needs are stored in the model's ``metadata_props``:

    edgecam.family   yolo-darknet
    edgecam.anchors  stride32:81,82,135,169,344,319;stride16:10,14,23,27,37,58
                     (w,h pairs in input pixels, the cfg's mask for that output)
    edgecam.labels   class names in Darknet order, comma-separated
    edgecam.source   where the cfg and weights came from

Batch normalisation is folded into the convolution weights and biases. The
supported layer types are the ones YOLOv3-tiny uses: [convolutional] (linear or
leaky activation), [maxpool], [upsample], [route] and [yolo]. Anything else is
rejected rather than converted approximately.

The output is byte-for-byte reproducible for the same inputs and the same pinned
onnx/numpy/protobuf versions: no timestamps, fixed producer fields, a fixed IR
version, and the weights folded in float64 with correctly rounded elementwise
operations before rounding once to float32.

Only numpy and onnx are needed. Usage:

    darknet2onnx.py --cfg yolov3-tiny.cfg --weights yolov3-tiny.weights \\
        --names coco.names --size 320 --output yolov3-tiny-320.onnx
"""

import argparse
import hashlib
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 13
# IR version 7 is the one that goes with opset 13 (ONNX 1.8). Pinned so the file
# does not change with the onnx package's default.
IR_VERSION = 7
PRODUCER_NAME = "edgecam-darknet2onnx"
PRODUCER_VERSION = "1"
LEAKY_SLOPE = 0.1
# Darknet's GPU normalisation (which training runs through) divides by
# sqrt(variance + 1e-5); its CPU-only path uses sqrt(variance) + 1e-6 instead.
# The two differ far below float32 noise for these weights' variances.
BN_EPSILON = 1e-5
INPUT_NAME = "images"


class ConvertError(Exception):
    pass


# ---------------------------------------------------------------------------
# cfg parsing


def parse_cfg(path):
    """Return a list of (section_type, {key: value}) in file order."""
    sections = []
    with open(path, "r", encoding="utf-8") as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.split("#", 1)[0].split(";", 1)[0].strip()
            if not line:
                continue
            if line.startswith("["):
                if not line.endswith("]"):
                    raise ConvertError(f"{path}:{lineno}: bad section header {line!r}")
                sections.append((line[1:-1].strip().lower(), {}))
                continue
            if "=" not in line:
                raise ConvertError(f"{path}:{lineno}: expected key=value, got {line!r}")
            if not sections:
                raise ConvertError(f"{path}:{lineno}: option before the first section")
            key, value = line.split("=", 1)
            sections[-1][1][key.strip()] = value.strip()
    if not sections or sections[0][0] not in ("net", "network"):
        raise ConvertError(f"{path}: the first section must be [net]")
    return sections


def opt_int(opts, key, default=None):
    if key not in opts:
        if default is None:
            raise ConvertError(f"missing required option {key}=")
        return default
    try:
        return int(opts[key])
    except ValueError:
        raise ConvertError(f"option {key}={opts[key]!r} is not an integer") from None


def opt_ints(opts, key):
    if key not in opts:
        raise ConvertError(f"missing required option {key}=")
    try:
        return [int(v) for v in opts[key].split(",") if v.strip()]
    except ValueError:
        raise ConvertError(f"option {key}={opts[key]!r} is not a list of integers") from None


def reject_options(kind, index, opts, allowed):
    """Refuse options that would change the maths in a way this converter ignores."""
    unknown = sorted(set(opts) - set(allowed))
    if unknown:
        raise ConvertError(
            f"layer {index} [{kind}]: unsupported option(s) {', '.join(unknown)}"
        )


# ---------------------------------------------------------------------------
# weights


class WeightReader:
    def __init__(self, path):
        with open(path, "rb") as f:
            data = f.read()
        if len(data) < 16:
            raise ConvertError(f"{path}: too short for a Darknet weights header")
        major, minor, revision = np.frombuffer(data, dtype="<i4", count=3)
        major, minor, revision = int(major), int(minor), int(revision)
        if major >= 1000 or minor >= 1000:
            raise ConvertError(f"{path}: transposed (version {major}.{minor}) weights are not supported")
        # `seen` is a size_t (8 bytes) from version 0.2 on, an int before.
        offset = 12 + (8 if major * 10 + minor >= 2 else 4)
        body = data[offset:]
        if len(body) % 4:
            raise ConvertError(f"{path}: weights body is not a whole number of float32s")
        self.path = path
        self.version = (major, minor, revision)
        self.floats = np.frombuffer(body, dtype="<f4")
        self.pos = 0

    def take(self, count, what):
        end = self.pos + count
        if end > self.floats.size:
            raise ConvertError(
                f"{self.path}: ran out of weights reading {what} "
                f"(need {count} floats at {self.pos}, file has {self.floats.size}); "
                "the cfg does not match these weights"
            )
        out = self.floats[self.pos:end].astype(np.float64)
        self.pos = end
        return out

    def finish(self):
        left = self.floats.size - self.pos
        if left:
            raise ConvertError(
                f"{self.path}: {left} float(s) left over after the last layer; "
                "the cfg does not match these weights"
            )


# ---------------------------------------------------------------------------
# graph building


class Graph:
    def __init__(self):
        self.nodes = []
        self.initializers = []
        self.producer = {}  # tensor name -> (node, output slot)

    def const(self, name, array):
        self.initializers.append(numpy_helper.from_array(array, name=name))
        return name

    def node(self, op, inputs, output, name, **attrs):
        n = helper.make_node(op, inputs, [output], name=name, **attrs)
        self.nodes.append(n)
        self.producer[output] = (n, 0)
        return output

    def has_consumers(self, tensor):
        return any(tensor in n.input for n in self.nodes)


def fold_batchnorm(weights, beta, gamma, mean, var):
    scale = gamma / np.sqrt(var + BN_EPSILON)
    return weights * scale[:, None, None, None], beta - mean * scale


def convert(cfg_path, weights_path, names, size, source):
    sections = parse_cfg(cfg_path)
    net = sections[0][1]
    channels = opt_int(net, "channels", 3)
    if channels != 3:
        raise ConvertError(f"[net] channels={channels}: only 3-channel (RGB) input is supported")

    reader = WeightReader(weights_path)
    g = Graph()

    # Per layer (index = position after [net], as Darknet numbers them):
    # output tensor name and its (channels, height, width).
    outputs = []
    shapes = []
    yolo_outputs = []  # (output name, (c, h, w), anchors for this output)
    classes_seen = set()

    cur, (c, h, w) = INPUT_NAME, (channels, size, size)
    for index, (kind, opts) in enumerate(sections[1:]):
        tag = f"layer{index}"
        if kind in ("convolutional", "conv"):
            reject_options(kind, index, opts,
                           ["batch_normalize", "filters", "size", "stride", "pad",
                            "padding", "activation", "groups"])
            filters = opt_int(opts, "filters")
            k = opt_int(opts, "size")
            stride = opt_int(opts, "stride", 1)
            if opt_int(opts, "groups", 1) != 1:
                raise ConvertError(f"layer {index}: grouped convolution is not supported")
            pad = k // 2 if opt_int(opts, "pad", 0) else opt_int(opts, "padding", 0)
            bn = opt_int(opts, "batch_normalize", 0) != 0
            activation = opts.get("activation", "logistic")
            if activation not in ("leaky", "linear"):
                raise ConvertError(f"layer {index}: activation={activation} is not supported")

            bias = reader.take(filters, f"{tag} biases")
            if bn:
                gamma = reader.take(filters, f"{tag} scales")
                mean = reader.take(filters, f"{tag} rolling mean")
                var = reader.take(filters, f"{tag} rolling variance")
            weights = reader.take(filters * c * k * k, f"{tag} weights").reshape(filters, c, k, k)
            if bn:
                weights, bias = fold_batchnorm(weights, bias, gamma, mean, var)

            w_name = g.const(f"{tag}.weight", weights.astype(np.float32))
            b_name = g.const(f"{tag}.bias", bias.astype(np.float32))
            conv_out = f"{tag}.conv" if activation == "leaky" else tag
            g.node("Conv", [cur, w_name, b_name], conv_out, f"{tag}.Conv",
                   kernel_shape=[k, k], strides=[stride, stride],
                   pads=[pad, pad, pad, pad], dilations=[1, 1], group=1)
            if activation == "leaky":
                g.node("LeakyRelu", [conv_out], tag, f"{tag}.LeakyRelu", alpha=LEAKY_SLOPE)
            cur = tag
            c = filters
            h = (h + 2 * pad - k) // stride + 1
            w = (w + 2 * pad - k) // stride + 1

        elif kind in ("maxpool", "max"):
            reject_options(kind, index, opts, ["size", "stride", "padding"])
            k = opt_int(opts, "size", 1)
            stride = opt_int(opts, "stride", 1)
            # Darknet pads by `padding` (default size-1) in total, pad/2 of it
            # before; windows reaching past the edge just ignore those cells,
            # which is what ONNX MaxPool's padding does too.
            total = opt_int(opts, "padding", k - 1)
            begin = total // 2
            out_h = (h + total - k) // stride + 1
            out_w = (w + total - k) // stride + 1
            end_h = max(0, (out_h - 1) * stride + k - h - begin)
            end_w = max(0, (out_w - 1) * stride + k - w - begin)
            g.node("MaxPool", [cur], tag, f"{tag}.MaxPool",
                   kernel_shape=[k, k], strides=[stride, stride],
                   pads=[begin, begin, end_h, end_w])
            cur, h, w = tag, out_h, out_w

        elif kind == "upsample":
            reject_options(kind, index, opts, ["stride"])
            stride = opt_int(opts, "stride", 2)
            if stride < 1:
                raise ConvertError(f"layer {index}: [upsample] stride={stride} is not supported")
            scales = g.const(f"{tag}.scales",
                             np.array([1.0, 1.0, stride, stride], dtype=np.float32))
            g.node("Resize", [cur, "", scales], tag, f"{tag}.Resize",
                   mode="nearest", coordinate_transformation_mode="asymmetric",
                   nearest_mode="floor")
            cur, h, w = tag, h * stride, w * stride

        elif kind == "route":
            reject_options(kind, index, opts, ["layers"])
            refs = []
            for ref in opt_ints(opts, "layers"):
                target = index + ref if ref < 0 else ref
                if not 0 <= target < index:
                    raise ConvertError(f"layer {index}: [route] refers to layer {ref}")
                refs.append(target)
            if any(shapes[r][1:] != shapes[refs[0]][1:] for r in refs):
                raise ConvertError(f"layer {index}: [route] joins layers of different sizes")
            if len(refs) == 1:
                cur = outputs[refs[0]]
            else:
                g.node("Concat", [outputs[r] for r in refs], tag, f"{tag}.Concat", axis=1)
                cur = tag
            c = sum(shapes[r][0] for r in refs)
            h, w = shapes[refs[0]][1:]

        elif kind in ("yolo", "region"):
            if kind == "region":
                raise ConvertError(f"layer {index}: [region] (YOLOv2) is not supported")
            mask = opt_ints(opts, "mask")
            anchors = opt_ints(opts, "anchors")
            classes = opt_int(opts, "classes")
            num = opt_int(opts, "num", len(anchors) // 2)
            if len(anchors) != 2 * num or any(not 0 <= m < num for m in mask):
                raise ConvertError(f"layer {index}: [yolo] mask/anchors/num disagree")
            if c != len(mask) * (5 + classes):
                raise ConvertError(
                    f"layer {index}: [yolo] input has {c} channels, expected "
                    f"{len(mask)} * (5 + {classes})")
            if size % h or size % w or size // h != size // w:
                raise ConvertError(
                    f"layer {index}: input size {size} is not a whole multiple of the "
                    f"{h}x{w} grid; pick a multiple of 32")
            stride = size // h
            name = f"stride{stride}"
            if any(y[0] == name for y in yolo_outputs):
                raise ConvertError(f"layer {index}: two [yolo] layers at stride {stride}")
            classes_seen.add(classes)
            # Give the tensor feeding [yolo] the output's name: rename it in
            # place when nothing reads it yet, else add an Identity. The node
            # producing it gets the same name, as tract reports outputs by node.
            producer = g.producer.get(cur)
            if producer is not None and not g.has_consumers(cur):
                node, slot = producer
                node.output[slot] = name
                node.name = name
                del g.producer[cur]
                g.producer[name] = producer
                for i, o in enumerate(outputs):
                    if o == cur:
                        outputs[i] = name
            else:
                g.node("Identity", [cur], name, name)
            cur = name
            pairs = []
            for m in mask:
                pairs += anchors[2 * m:2 * m + 2]
            yolo_outputs.append((name, (c, h, w), pairs))

        else:
            raise ConvertError(f"layer {index}: [{kind}] layers are not supported")

        if h <= 0 or w <= 0:
            raise ConvertError(f"layer {index}: input size {size} is too small")
        outputs.append(cur)
        shapes.append((c, h, w))

    reader.finish()
    if not yolo_outputs:
        raise ConvertError(f"{cfg_path}: no [yolo] layers")
    if len(classes_seen) != 1:
        raise ConvertError(f"{cfg_path}: [yolo] layers disagree on classes=")
    (classes,) = classes_seen
    if len(names) != classes:
        raise ConvertError(f"{len(names)} class names given, the cfg has classes={classes}")

    graph = helper.make_graph(
        g.nodes,
        "darknet",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [1, channels, size, size])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, cc, hh, ww])
         for name, (cc, hh, ww), _ in yolo_outputs],
        initializer=g.initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name=PRODUCER_NAME,
        producer_version=PRODUCER_VERSION,
    )
    model.ir_version = IR_VERSION
    model.model_version = 1
    metadata = [
        ("edgecam.family", "yolo-darknet"),
        ("edgecam.anchors", ";".join(
            f"{name}:{','.join(str(a) for a in pairs)}" for name, _, pairs in yolo_outputs)),
        ("edgecam.labels", ",".join(names)),
        ("edgecam.source", source),
    ]
    for key, value in metadata:
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model, full_check=True)
    return model, yolo_outputs, reader.version


def read_names(path):
    with open(path, "r", encoding="utf-8") as f:
        names = [line.strip() for line in f if line.strip()]
    for n in names:
        if "," in n or ";" in n:
            raise ConvertError(f"{path}: class name {n!r} contains ',' or ';'")
    return names


def sha256_file(path):
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cfg", required=True, help="Darknet network .cfg")
    ap.add_argument("--weights", required=True, help="Darknet .weights")
    ap.add_argument("--names", required=True,
                    help="class names, one a line, in Darknet order (e.g. coco.names)")
    ap.add_argument("--size", type=int, default=320,
                    help="square input size in pixels (a multiple of 32; default 320)")
    ap.add_argument("--source", help="text for the edgecam.source metadata entry "
                    "(default: the input files' names and sha256s)")
    ap.add_argument("--output", "-o", required=True, help="ONNX file to write")
    args = ap.parse_args(argv)

    if args.size <= 0 or args.size % 32:
        ap.error("--size must be a positive multiple of 32")
    source = args.source
    if source is None:
        source = "; ".join(
            f"{os.path.basename(p)} sha256:{sha256_file(p)}"
            for p in (args.cfg, args.weights, args.names))
    try:
        model, yolo_outputs, version = convert(
            args.cfg, args.weights, read_names(args.names), args.size, source)
    except (ConvertError, OSError) as e:
        print(f"darknet2onnx: error: {e}", file=sys.stderr)
        return 1
    except onnx.checker.ValidationError as e:
        print(f"darknet2onnx: error: the ONNX checker rejected the model: {e}", file=sys.stderr)
        return 1

    data = model.SerializeToString()
    tmp = f"{args.output}.tmp.{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, args.output)
    params = sum(int(np.prod(t.dims)) for t in model.graph.initializer)
    print(f"darknet2onnx: weights version {'.'.join(map(str, version))}, "
          f"{len(model.graph.node)} nodes, {params} parameters", file=sys.stderr)
    for name, (c, h, w), pairs in yolo_outputs:
        print(f"darknet2onnx: output {name} [1,{c},{h},{w}] anchors {pairs}", file=sys.stderr)
    print(f"darknet2onnx: wrote {args.output} ({len(data)} bytes)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
