"""Convert a CTranslate2 whisper model (faster-whisper format) to whisper.cpp's ggml format.

The CTranslate2 file holds every tensor in float16 with fused attention projections; whisper.cpp
wants separate query/key/value tensors, float32 biases and norms, and the layout that
openai-whisper's state dict has. See models/README.md for the facts this relies on.
"""
from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import numpy as np

GGML_MAGIC = 0x67676D6C
# 2-D tensors that whisper.cpp still wants in float32.
F32_TENSORS = {"encoder.conv1.bias", "encoder.conv2.bias", "encoder.positional_embedding", "decoder.positional_embedding"}
CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


def read_ct2(path: Path) -> dict[str, np.ndarray]:
    """Read a CTranslate2 model.bin (binary version 6) into named arrays; aliases are dropped."""
    data = path.read_bytes()
    pos = 0

    def take(fmt: str):
        nonlocal pos
        size = struct.calcsize("<" + fmt)
        vals = struct.unpack_from("<" + fmt, data, pos)
        pos += size
        return vals

    def string() -> str:
        nonlocal pos
        (n,) = take("H")
        s = data[pos : pos + n - 1].decode("utf-8")
        pos += n
        return s

    (version,) = take("I")
    if version != 6:
        raise ValueError(f"unsupported CTranslate2 binary version {version}")
    spec = string()
    if spec != "WhisperSpec":
        raise ValueError(f"not a whisper model: {spec}")
    take("I")  # spec revision
    (count,) = take("I")
    tensors: dict[str, np.ndarray] = {}
    for _ in range(count):
        name = string()
        (rank,) = take("B")
        shape = take("I" * rank) if rank else ()
        (dtype_id,) = take("B")
        (nbytes,) = take("I")
        dtype = CT2_DTYPES.get(dtype_id)
        if dtype is None:
            raise ValueError(f"{name}: unsupported dtype id {dtype_id}")
        arr = np.frombuffer(data, dtype=dtype, count=nbytes // np.dtype(dtype).itemsize, offset=pos)
        tensors[name] = arr.reshape(shape) if rank else arr
        pos += nbytes
    return tensors


def layer_count(t: dict[str, np.ndarray], stack: str) -> int:
    return len({k.split("/")[1] for k in t if re.match(rf"{stack}/layer_\d+/", k)})


def sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> np.ndarray:
    """The encoder's fixed positional embedding (CTranslate2 keeps only an f16 copy): float64, rounded once."""
    log_timescale_increment = np.log(max_timescale) / (channels // 2 - 1)
    inv_timescales = np.exp(-log_timescale_increment * np.arange(channels // 2))
    scaled_time = np.arange(length)[:, None] * inv_timescales[None, :]
    return np.concatenate([np.sin(scaled_time), np.cos(scaled_time)], axis=1).astype(np.float32)


def mel_filters(sr: int = 16000, n_fft: int = 400, n_mels: int = 80) -> np.ndarray:
    """Slaney-style mel filterbank, computed as librosa does with float32 weights.

    This reproduces openai-whisper's `assets/mel_filters.npz` (`mel_80`) bit for bit.
    """

    def hz_to_mel(f: np.ndarray) -> np.ndarray:
        f_sp, min_log_hz = 200.0 / 3, 1000.0
        mels = f / f_sp
        log = f >= min_log_hz
        mels[log] = min_log_hz / f_sp + np.log(f[log] / min_log_hz) / (np.log(6.4) / 27.0)
        return mels

    def mel_to_hz(m: np.ndarray) -> np.ndarray:
        f_sp, min_log_hz = 200.0 / 3, 1000.0
        min_log_mel = min_log_hz / f_sp
        freqs = f_sp * m
        log = m >= min_log_mel
        freqs[log] = min_log_hz * np.exp(np.log(6.4) / 27.0 * (m[log] - min_log_mel))
        return freqs

    fft_freqs = np.fft.rfftfreq(n=n_fft, d=1.0 / sr)
    edges = hz_to_mel(np.array([0.0, sr / 2.0]))
    mel_f = mel_to_hz(np.linspace(edges[0], edges[1], n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fft_freqs)
    weights = np.zeros((n_mels, 1 + n_fft // 2), dtype=np.float32)
    for i in range(n_mels):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels]))[:, None]
    return weights


def byte_decoder() -> dict[str, int]:
    """Inverse of GPT-2's byte-to-unicode table used by byte-level BPE vocabularies."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def read_vocabulary(path: Path) -> list[str]:
    """CTranslate2 vocabulary: `vocabulary.txt` (one token per line) or `vocabulary.json` (a list)."""
    if path.suffix == ".json":
        return json.loads(path.read_text(encoding="utf-8"))
    return path.read_text(encoding="utf-8").split("\n")


def bpe_tokens(path: Path) -> list[bytes]:
    """The ranked byte-level BPE tokens (everything before `<|endoftext|>`) as raw bytes."""
    symbols = read_vocabulary(path)
    count = symbols.index("<|endoftext|>")
    dec = byte_decoder()
    return [bytes(dec[c] for c in sym) for sym in symbols[:count]]


def whisper_state(t: dict[str, np.ndarray]) -> list[tuple[str, np.ndarray]]:
    """Map CTranslate2 names to openai-whisper's state-dict names and order."""
    out: list[tuple[str, np.ndarray]] = []
    n_state = t["encoder/conv1/bias"].shape[0]
    n_enc, n_dec = layer_count(t, "encoder"), layer_count(t, "decoder")
    n_audio_ctx = t["encoder/position_encodings/encodings"].shape[0]

    def attn(prefix_ct2: str, prefix: str, fused_qkv: bool):
        w = t[f"{prefix_ct2}/linear_0/weight"]
        b = t[f"{prefix_ct2}/linear_0/bias"]
        if fused_qkv:
            q_w, k_w, v_w = np.split(w, 3, axis=0)
            q_b, k_b, v_b = np.split(b, 3, axis=0)
            if np.any(k_b != 0):
                raise ValueError(f"{prefix_ct2}: key bias is not zero; whisper.cpp has no key bias")
            out_w = t[f"{prefix_ct2}/linear_1/weight"]
            out_b = t[f"{prefix_ct2}/linear_1/bias"]
        else:
            q_w, q_b = w, b
            kv_w = t[f"{prefix_ct2}/linear_1/weight"]
            kv_b = t[f"{prefix_ct2}/linear_1/bias"]
            k_w, v_w = np.split(kv_w, 2, axis=0)
            k_b, v_b = np.split(kv_b, 2, axis=0)
            if np.any(k_b != 0):
                raise ValueError(f"{prefix_ct2}: key bias is not zero; whisper.cpp has no key bias")
            out_w = t[f"{prefix_ct2}/linear_2/weight"]
            out_b = t[f"{prefix_ct2}/linear_2/bias"]
        out.extend(
            [
                (f"{prefix}.query.weight", q_w),
                (f"{prefix}.query.bias", q_b),
                (f"{prefix}.key.weight", k_w),
                (f"{prefix}.value.weight", v_w),
                (f"{prefix}.value.bias", v_b),
                (f"{prefix}.out.weight", out_w),
                (f"{prefix}.out.bias", out_b),
            ]
        )

    def norm(ct2: str, name: str):
        out.append((f"{name}.weight", t[f"{ct2}/gamma"]))
        out.append((f"{name}.bias", t[f"{ct2}/beta"]))

    def mlp(ct2: str, name: str):
        out.append((f"{name}.mlp.0.weight", t[f"{ct2}/ffn/linear_0/weight"]))
        out.append((f"{name}.mlp.0.bias", t[f"{ct2}/ffn/linear_0/bias"]))
        out.append((f"{name}.mlp.2.weight", t[f"{ct2}/ffn/linear_1/weight"]))
        out.append((f"{name}.mlp.2.bias", t[f"{ct2}/ffn/linear_1/bias"]))
        norm(f"{ct2}/ffn/layer_norm", f"{name}.mlp_ln")

    out.append(("encoder.positional_embedding", sinusoids(n_audio_ctx, n_state)))
    for i in (1, 2):
        out.append((f"encoder.conv{i}.weight", t[f"encoder/conv{i}/weight"]))
        out.append((f"encoder.conv{i}.bias", t[f"encoder/conv{i}/bias"].reshape(-1, 1)))
    for i in range(n_enc):
        ct2, name = f"encoder/layer_{i}", f"encoder.blocks.{i}"
        attn(f"{ct2}/self_attention", f"{name}.attn", True)
        norm(f"{ct2}/self_attention/layer_norm", f"{name}.attn_ln")
        mlp(ct2, name)
    norm("encoder/layer_norm", "encoder.ln_post")

    out.append(("decoder.positional_embedding", t["decoder/position_encodings/encodings"]))
    out.append(("decoder.token_embedding.weight", t["decoder/embeddings/weight"]))
    for i in range(n_dec):
        ct2, name = f"decoder/layer_{i}", f"decoder.blocks.{i}"
        attn(f"{ct2}/self_attention", f"{name}.attn", True)
        norm(f"{ct2}/self_attention/layer_norm", f"{name}.attn_ln")
        attn(f"{ct2}/attention", f"{name}.cross_attn", False)
        norm(f"{ct2}/attention/layer_norm", f"{name}.cross_attn_ln")
        mlp(ct2, name)
    norm("decoder/layer_norm", "decoder.ln")

    expected = 7 + 15 * n_enc + 4 + 24 * n_dec
    if len(out) != expected:
        raise ValueError(f"mapped {len(out)} tensors, whisper.cpp expects {expected}")
    return out


def hparams(t: dict[str, np.ndarray], n_mels: int) -> list[int]:
    n_vocab, n_text_state = t["decoder/embeddings/weight"].shape
    n_audio_ctx, n_audio_state = t["encoder/position_encodings/encodings"].shape
    n_text_ctx = t["decoder/position_encodings/encodings"].shape[0]
    n_enc, n_dec = layer_count(t, "encoder"), layer_count(t, "decoder")
    return [
        n_vocab,
        n_audio_ctx,
        n_audio_state,
        int(t["encoder/num_heads"].reshape(-1)[0]),
        n_enc,
        n_text_ctx,
        n_text_state,
        int(t["decoder/num_heads"].reshape(-1)[0]),
        n_dec,
        n_mels,
    ]


GGML_F32, GGML_F16, GGML_Q8_0 = 0, 1, 8
FTYPE_F16, FTYPE_Q8_0 = 1, 7
GGML_QNT_VERSION = 2  # ggml's quantization version, stored as ftype + 1000 * version


def quantize_q8_0(x: np.ndarray) -> bytes:
    """ggml Q8_0 blocks: 32 values → f16 scale d = max|x|/127 and 32 int8 values round(x/d)."""
    rows = x.astype(np.float32).reshape(-1, 32)
    d = np.abs(rows).max(axis=1) / np.float32(127)
    inv = np.divide(np.float32(1), d, out=np.zeros_like(d), where=d != 0)
    scaled = rows * inv[:, None]
    q = (np.sign(scaled) * np.floor(np.abs(scaled) + np.float32(0.5))).astype(np.int8)  # C roundf
    blocks = np.empty(rows.shape[0], dtype=[("d", "<f2"), ("qs", "i1", 32)])
    blocks["d"] = d.astype(np.float16)
    blocks["qs"] = q
    return blocks.tobytes()


def convert(model_bin: Path, vocabulary: Path, out: Path, quantize: str | None = None) -> None:
    """Write a ggml file: float16 (2-D weights f16; biases, norms, positions f32), or with
    quantize="q8_0" every 2-D f16 weight except the positional embeddings as Q8_0."""
    if quantize not in (None, "q8_0"):
        raise ValueError(f"unsupported quantization {quantize}")
    t = read_ct2(model_bin)
    mel = mel_filters()
    hp = hparams(t, mel.shape[0])
    tokens = bpe_tokens(vocabulary)
    ftype = FTYPE_F16 if quantize is None else FTYPE_Q8_0 + 1000 * GGML_QNT_VERSION
    tmp = out.with_suffix(out.suffix + ".partial")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<i", GGML_MAGIC))
        f.write(struct.pack("<11i", *hp, ftype))
        f.write(struct.pack("<ii", *mel.shape))
        f.write(np.ascontiguousarray(mel, dtype="<f4").tobytes())
        f.write(struct.pack("<i", len(tokens)))
        for tok in tokens:
            f.write(struct.pack("<i", len(tok)))
            f.write(tok)
        for name, data in whisper_state(t):
            n_dims = data.ndim
            if n_dims >= 2 and name not in F32_TENSORS:
                if quantize == "q8_0" and n_dims == 2 and data.shape[-1] % 32 == 0:
                    kind, payload = GGML_Q8_0, quantize_q8_0(data)
                else:
                    kind, payload = GGML_F16, np.ascontiguousarray(data, dtype="<f2").tobytes()
            else:
                kind, payload = GGML_F32, np.ascontiguousarray(data, dtype="<f4").tobytes()
            encoded = name.encode()
            f.write(struct.pack("<iii", n_dims, len(encoded), kind))
            f.write(struct.pack(f"<{n_dims}i", *reversed(data.shape)))
            f.write(encoded)
            f.write(payload)
    tmp.replace(out)
