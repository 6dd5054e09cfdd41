"""A manual cross-check with MXNet itself (not collected by pytest; MXNet is not a dependency).

CRU-Net-56 / -116 are built in MXNet as the released code names and wires them (docs/interop.md, the released names),
fed a full-size checkpoint written by the tests' writer, and their logits compared with ``crunet convert-mxnet``'s
model. MXNet 1.9.1 installs in a side environment (``python3 -m venv V && V/bin/pip install mxnet "numpy<1.24"``):

    .venv/bin/python tests/interop/mxnet_reference.py make DIR crunet56 crunet116
    V/bin/python tests/interop/mxnet_reference.py mxnet DIR crunet56 crunet116   # also writes MXNet's -symbol.json
    .venv/bin/python tests/interop/mxnet_reference.py compare DIR crunet56 crunet116

Last run (MXNet 1.9.1, 2 x 3 x 96 x 96 input): max |difference| 3.9e-6 (crunet56, logits up to 7.5) and 8.6e-6
(crunet116, logits up to 12.7); MXNet found exactly the parameters and statistics the converter maps.
"""

import sys
from pathlib import Path

import numpy as np

DESIGNS = {"crunet56": ((3, 4, 6, 3), (128, 256, 640, 1024), (32, 32, 0, 32)),  # depth, width, groups (0: CRU)
           "crunet116": ((3, 6, 18, 3), (128, 352, 704, 1024), (32, 0, 0, 32))}


def make(folder: Path, names: list[str]) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from test_mxnet_convert import write_released

    for name in names:
        write_released(folder, name, 1000)
    np.save(folder / "x.npy", np.random.RandomState(0).rand(2, 3, 96, 96).astype("float32"))


def mxnet_symbol(name: str):
    import mxnet as mx

    def bn_ac(x, n):
        bn = mx.sym.BatchNorm(x, fix_gamma=False, eps=1e-3, momentum=0.9, name=n + "__bn")
        return mx.sym.Activation(bn, act_type="relu")

    def conv(x, nf, k, s, n, w=None, g=1):
        kw = {"weight": w} if w is not None else {}
        return mx.sym.Convolution(x, num_filter=nf, kernel=(k, k), stride=(s, s), pad=(k // 2, k // 2), num_group=g,
                                  no_bias=True, name=n + "__conv", **kw)

    def bn_ac_conv(x, nf, k, s, n, g=1):
        return conv(bn_ac(x, n + "__bn"), nf, k, s, n, g=g)

    x = bn_ac(conv(mx.sym.Variable("data"), 64, 7, 2, "conv1_x_1"), "conv1_x_1__relu-sp")
    x = mx.sym.Pooling(x, kernel=(3, 3), stride=(2, 2), pad=(1, 1), pool_type="max")
    for i, (depth, width, groups) in enumerate(zip(*DESIGNS[name], strict=True)):
        s, out, shared = i + 2, 256 * 2 ** i, None
        for u in range(depth):
            p, stride, first = f"conv{s}_x__{u + 1}", (2 if u == 0 and i > 0 else 1), u == 0
            if groups:  # a plain pre-activation ResNeXt unit
                main = bn_ac_conv(x, width, 1, 1, p + "_c1x1-a")
                main = bn_ac_conv(main, width, 3, stride, p + "_c3x3-b", g=groups)
                main = bn_ac_conv(main, out, 1, 1, p + "_c1x1-c")
                short = bn_ac_conv(x, out, 1, stride, p + f"_c1x1-w(s/{stride})") if first else x
            else:  # a Collective Residual Unit: W1, W2 shared by six units
                if u % 6 == 0:
                    g = "x" if depth <= 6 else f"({u // 6 + 1})"
                    shared = (mx.sym.Variable(f"conv{s}_x__{g}_1x1_bases[dim3]_weight"),
                              mx.sym.Variable(f"conv{s}_x__{g}_3x3_bases[dim21]_weight"))
                x_in = short = x
                if first:
                    wp = mx.sym.Variable(p + "_c1x1-w_weight")
                    x_in = conv(bn_ac(x, p + "_c1x1-w(s/1)__bn"), out, 1, 1, p + "_c1x1-w(s/1)", w=wp)
                    short = conv(bn_ac(x, p + "_c1x1-w(s/key)__bn"), out, 1, stride, p + "_c1x1-w(s/key)", w=wp)
                main = conv(bn_ac(x_in, p + "_c1x1-a__bn"), width, 1, 1, p + "_c1x1-a", w=shared[0])
                main = conv(main, width, 3, stride, p + "_c3x3-b", w=shared[1], g=width)
                main = bn_ac_conv(main, width, 1, 1, p + "_c1x1-b")
                main = bn_ac_conv(main, out, 1, 1, p + "_c1x1-c")
            x = main + short
    x = mx.sym.Pooling(bn_ac(x, "conv5_x_x__relu-sp"), global_pool=True, pool_type="avg", kernel=(1, 1))
    return mx.sym.FullyConnected(mx.sym.Flatten(x), num_hidden=1000, name="fc6")


def run_mxnet(folder: Path, names: list[str]) -> None:
    import mxnet as mx

    for name in names:
        sym = mxnet_symbol(name)
        loaded = mx.nd.load(str(folder / f"{name}-0000.params"))
        arg = {k[4:]: v for k, v in loaded.items() if k.startswith("arg:")}
        aux = {k[4:]: v for k, v in loaded.items() if k.startswith("aux:")}
        assert set(sym.list_arguments()) - {"data"} == set(arg) and set(sym.list_auxiliary_states()) == set(aux)
        ex = sym.bind(mx.cpu(), {**arg, "data": mx.nd.array(np.load(folder / "x.npy"))}, aux_states=aux)
        np.save(folder / f"{name}-logits.npy", ex.forward(is_train=False)[0].asnumpy())
        sym.save(str(folder / f"{name}-symbol.json"))


def compare(folder: Path, names: list[str]) -> None:
    import torch

    from crunet.interop.mxnet_weights import convert_checkpoint

    for name in names:
        model = convert_checkpoint(folder / name, name)
        with torch.no_grad():
            ours = model(torch.from_numpy(np.load(folder / "x.npy"))).numpy()
        theirs = np.load(folder / f"{name}-logits.npy")
        print(f"{name}: max |difference| {np.abs(ours - theirs).max():.2e}, logits up to {np.abs(theirs).max():.1f}")


if __name__ == "__main__":
    step, folder, *models = sys.argv[1:]
    {"make": make, "mxnet": run_mxnet, "compare": compare}[step](Path(folder), models)
