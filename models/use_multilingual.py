"""Prepare Universal Sentence Encoder multilingual (CNN, int8 ONNX) for ONNX Runtime without extensions.

The published graph starts with a `SentencepieceTokenizer` node from onnxruntime-extensions. needtag
tokenizes in Rust with the `tokenizers` crate instead, so this module
- cuts that node out and makes its two outputs (flat int32 token ids, int64 row splits) the graph
  inputs, and
- rebuilds the SentencePiece model held in the node's `model` attribute as a tokenizer.json
  (Unigram model, nmt_nfkc precompiled normaliser, metaspace pre-tokeniser).
"""
from __future__ import annotations

import base64
import json
import struct
from pathlib import Path

import onnx
from onnx import helper

TOKEN_IDS = "token_ids"
ROW_SPLITS = "row_splits"


def _varint(b: bytes, i: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = b[i]
        i += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return result, i


def _fields(b: bytes):
    """Yield (field number, wire type, value) of a serialized protobuf message."""
    i = 0
    while i < len(b):
        key, i = _varint(b, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(b, i)
        elif wire == 1:
            value, i = b[i : i + 8], i + 8
        elif wire == 5:
            value, i = b[i : i + 4], i + 4
        elif wire == 2:
            n, i = _varint(b, i)
            value, i = b[i : i + n], i + n
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield field, wire, value


def sentencepiece_to_tokenizer_json(model: bytes) -> dict:
    """Translate a SentencePiece ModelProto (unigram) into a `tokenizers` tokenizer.json."""
    vocab: list[list] = []
    charsmap = b""
    add_dummy_prefix = True
    unk_id = 0
    model_type = 1
    for field, _, value in _fields(model):
        if field == 1:  # SentencePiece
            piece, score, kind = "", 0.0, 1
            for f, _, v in _fields(value):
                if f == 1:
                    piece = v.decode("utf-8")
                elif f == 2:
                    score = struct.unpack("<f", v)[0]
                elif f == 3:
                    kind = v
            if kind == 2:
                unk_id = len(vocab)
            vocab.append([piece, score])
        elif field == 2:  # TrainerSpec
            for f, _, v in _fields(value):
                if f == 3:
                    model_type = v
        elif field == 3:  # NormalizerSpec
            for f, _, v in _fields(value):
                if f == 2:
                    charsmap = v
                elif f == 3:
                    add_dummy_prefix = bool(v)
    if model_type != 1:
        raise ValueError(f"SentencePiece model type {model_type} is not unigram")
    normalizers = [{"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "}]
    if charsmap:
        normalizers.insert(0, {"type": "Precompiled", "precompiled_charsmap": base64.b64encode(charsmap).decode()})
    scheme = "always" if add_dummy_prefix else "never"
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [],
        "normalizer": {"type": "Sequence", "normalizers": normalizers},
        "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": scheme, "split": True},
        "post_processor": None,
        "decoder": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": scheme, "split": True},
        "model": {"type": "Unigram", "unk_id": unk_id, "vocab": vocab, "byte_fallback": False},
    }


def prepare(src: Path, onnx_out: Path, tokenizer_out: Path) -> None:
    model = onnx.load(str(src))
    graph = model.graph
    sp = [n for n in graph.node if n.op_type == "SentencepieceTokenizer"]
    if len(sp) != 1:
        raise ValueError("expected exactly one SentencepieceTokenizer node")
    node = sp[0]
    sp_model = next(a.s for a in node.attribute if a.name == "model")
    ids_out, splits_out = node.output[0], node.output[1]

    graph.node.remove(node)
    for n in graph.node:
        for i, name in enumerate(n.input):
            if name == ids_out:
                n.input[i] = TOKEN_IDS
            elif name == splits_out:
                n.input[i] = ROW_SPLITS
    while len(graph.input):
        graph.input.pop()
    graph.input.extend(
        [
            helper.make_tensor_value_info(TOKEN_IDS, onnx.TensorProto.INT32, ["tokens"]),
            helper.make_tensor_value_info(ROW_SPLITS, onnx.TensorProto.INT64, ["rows_plus_one"]),
        ]
    )
    used = {name for n in graph.node for name in n.input}
    keep = [init for init in graph.initializer if init.name in used]
    while len(graph.initializer):
        graph.initializer.pop()
    graph.initializer.extend(keep)
    opsets = [o for o in model.opset_import if o.domain != "ai.onnx.contrib"]
    while len(model.opset_import):
        model.opset_import.pop()
    model.opset_import.extend(opsets)
    if any(n.domain == "ai.onnx.contrib" for n in graph.node):
        raise ValueError("graph still needs onnxruntime-extensions")
    onnx.checker.check_model(model)
    onnx.save(model, str(onnx_out))
    tokenizer_out.write_text(json.dumps(sentencepiece_to_tokenizer_json(sp_model), ensure_ascii=False), encoding="utf-8")




