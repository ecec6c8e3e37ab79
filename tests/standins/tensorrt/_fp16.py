"""FP16 emulation on the CPU: onnxconverter-common's float16 conversion with the FP32-pinned nodes blocked."""

from __future__ import annotations


def _route_outputs(model, block: set[str]) -> None:
    """Give each graph output that is also read inside the graph its own Identity (pinned with its producer).

    onnxconverter-common casts a graph output back to FP32 right after its producer and lets the in-graph readers
    of that tensor see the cast, which breaks type inference when the readers are of another precision (x0 of a
    fused step feeds the next update). Routing the output through an Identity keeps the readers on the producer's
    own tensor.
    """
    from onnx import helper

    outs = {o.name for o in model.graph.output}
    read = {i for n in model.graph.node for i in n.input}
    nodes = []
    for node in model.graph.node:
        nodes.append(node)
        for k, name in enumerate(node.output):
            if name not in outs or name not in read:
                continue
            inner = f"{name}__in_graph"
            node.output[k] = inner
            for other in model.graph.node:
                for j, i in enumerate(other.input):
                    if i == name:
                        other.input[j] = inner
            ident = helper.make_node("Identity", [inner], [name], name=f"{node.name}.io.{name}")
            nodes.append(ident)
            if node.name in block:
                block.add(ident.name)
    del model.graph.node[:]
    model.graph.node.extend(nodes)


def _constants_to_initializers(model) -> None:
    """Turn Constant nodes into initializers, in place (the converter rewrites Constant values to FP16 even when
    their reader is blocked, but keeps a blocked reader's initializers FP32)."""
    from onnx import helper, numpy_helper

    keep = []
    for node in model.graph.node:
        if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
            arr = numpy_helper.to_array(helper.get_attribute_value(node.attribute[0]))
            model.graph.initializer.append(numpy_helper.from_array(arr, node.output[0]))
        else:
            keep.append(node)
    del model.graph.node[:]
    model.graph.node.extend(keep)


def _noop_casts_to_identity(model) -> None:
    """Replace Casts to the type their input already has by Identity, in place (the converter's cast clean-up
    rewires around FP32->FP32 casts and leaves mixed-type readers behind)."""
    from onnx import helper, shape_inference

    g = shape_inference.infer_shapes(model, strict_mode=False).graph
    types = {v.name: v.type.tensor_type.elem_type for v in (*g.input, *g.value_info, *g.output)}
    types.update({i.name: i.data_type for i in model.graph.initializer})
    for node in model.graph.node:
        if node.op_type == "Cast" and types.get(node.input[0]) == helper.get_attribute_value(node.attribute[0]):
            node.op_type = "Identity"
            del node.attribute[:]


def fp16_emulation(model, pinned: list[str]):
    """A copy of `model` computing in FP16 except the pinned nodes, with FP32 inputs and outputs."""
    import warnings

    import onnx
    from onnxconverter_common import float16

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    block = set(pinned)
    _constants_to_initializers(copy)
    _noop_casts_to_identity(copy)
    _route_outputs(copy, block)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the converter warns about every value it clamps to the FP16 range
        out = float16.convert_float_to_float16(copy, keep_io_types=True, node_block_list=sorted(block))
    _restore_output_types(out, model)
    del out.graph.value_info[:]  # the converter leaves stale FP16 value_info on blocked Cast outputs; ORT re-infers
    onnx.checker.check_model(out)
    return out


def _restore_output_types(converted, original) -> None:
    """Make every graph output keep its original type (the converter casts a pinned producer's output to FP16)."""
    from onnx import helper

    want = {o.name: o.type.tensor_type.elem_type for o in original.graph.output}
    producers = {o: n for n in converted.graph.node for o in n.output}
    for out in converted.graph.output:
        if out.type.tensor_type.elem_type == want[out.name]:
            continue
        node = producers.get(out.name)
        if node is None or node.op_type != "Cast":
            raise AssertionError(f"FP16 emulation changed output {out.name!r} to type {out.type.tensor_type.elem_type}")
        del node.attribute[:]
        node.attribute.append(helper.make_attribute("to", want[out.name]))
        out.type.tensor_type.elem_type = want[out.name]
