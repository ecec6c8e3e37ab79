"""The MQTT messages of one layer (meta, images, anomaly) built as spool messages per docs/mqtt.md."""

from __future__ import annotations

import hashlib
import json

from edge.publish.topics import Topics
from edge.store.spool import SpoolMessage

JSON = "application/json"
PNG = "image/png"


def sha256_hex(data: bytes) -> str:
    """Hex sha256 of bytes."""
    return hashlib.sha256(data).hexdigest()


def image_info(data: bytes, shape: tuple[int, ...]) -> dict:
    """What meta says about one published image."""
    return {"sha256": sha256_hex(data), "bytes": len(data), "height": int(shape[0]), "width": int(shape[1]),
            "content_type": PNG}


def _json(obj: dict) -> bytes:
    """Compact, key-sorted JSON bytes."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def layer_messages(topics: Topics, job: str, layer: int, layer_uuid: str, meta: dict, images: dict[str, bytes],
                   anomaly: dict, stage: str = "final", latest: bool = True) -> list[SpoolMessage]:
    """meta, then each image (lr, sr, recoat...), then anomaly and (if `latest`) the retained anomaly/latest.

    All carry one CorrelationData. `stage` ("lr" when SR is behind and this is the early LR set, else
    "final") goes out as an MQTT 5 user property so the anomaly JSON keeps exactly the contract's keys.
    """
    corr = layer_uuid.encode()

    def msg(kind: str, payload: bytes, ctype: str, topic: str | None = None, retain: bool = False) -> SpoolMessage:
        return SpoolMessage(topic or topics.layer(job, layer, kind), payload, ctype, corr, job, layer, kind, 1, retain,
                            stage)

    out = [msg("meta", _json(meta), JSON)]
    out += [msg(kind, data, PNG) for kind, data in images.items()]
    anomaly_bytes = _json(anomaly)
    out.append(msg("anomaly", anomaly_bytes, JSON))
    if latest:
        out.append(msg("latest", anomaly_bytes, JSON, topics.anomaly_latest, retain=True))
    return out
