"""Image-task fixtures: tiny randomly initialised vision models (ViT classifier, ViT backbone,
CLIP) saved once per session with their image processors (and CLIP's tokenizer), a set of real
image files, and a local HTTP server on loopback that serves them (and redirects, and errors).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from image_helpers import IMAGE_LABELS, SIZE


@pytest.fixture(scope="session")
def image_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("image-models")


def _vit_config(**extra: Any) -> Any:
    from transformers import ViTConfig

    return ViTConfig(
        image_size=SIZE, patch_size=8, num_channels=3, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=2, intermediate_size=64, **extra,
    )


def _vit_processor() -> Any:
    from transformers import ViTImageProcessor

    return ViTImageProcessor(size={"height": SIZE, "width": SIZE})


@pytest.fixture(scope="session")
def tiny_vit_classifier(image_models_dir: Path) -> Path:
    import torch
    from transformers import ViTForImageClassification

    path = image_models_dir / "vit-classify"
    torch.manual_seed(10)
    config = _vit_config(id2label=IMAGE_LABELS, label2id={v: k for k, v in IMAGE_LABELS.items()})
    ViTForImageClassification(config).eval().save_pretrained(path)
    _vit_processor().save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_vit_backbone(image_models_dir: Path) -> Path:
    import torch
    from transformers import ViTModel

    path = image_models_dir / "vit-embed"
    torch.manual_seed(11)
    ViTModel(_vit_config()).eval().save_pretrained(path)
    _vit_processor().save_pretrained(path)
    return path


def _word_tokenizer() -> Any:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["a", "photo", "of", "the", "cat", "dog", "car", "boat", "red", "blue", "on", "in"]
    vocab = {w: i for i, w in enumerate(["<pad>", "<unk>", "<bos>", "<eos>", *words])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", unk_token="<unk>", bos_token="<bos>",
        eos_token="<eos>", model_max_length=16,
    )


@pytest.fixture(scope="session")
def tiny_clip(image_models_dir: Path) -> Path:
    """A tiny CLIP (both towers, projection 16) with its image processor and a word tokenizer:
    image-embed serves its image tower, embed its text tower."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    path = image_models_dir / "clip"
    tokenizer = _word_tokenizer()
    torch.manual_seed(12)
    config = CLIPConfig(
        text_config={
            "vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 64,
            "num_hidden_layers": 2, "num_attention_heads": 2, "max_position_embeddings": 16,
            "pad_token_id": 0, "bos_token_id": 2, "eos_token_id": 3,
        },
        vision_config={
            "image_size": SIZE, "patch_size": 8, "hidden_size": 32, "intermediate_size": 64,
            "num_hidden_layers": 2, "num_attention_heads": 2,
        },
        projection_dim=16,
    )
    CLIPModel(config).eval().save_pretrained(path)
    CLIPImageProcessor(
        size={"shortest_edge": SIZE}, crop_size={"height": SIZE, "width": SIZE}
    ).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


# ------------------------------------------------------------------------- local HTTP server


@dataclass
class ImageServer:
    """Serves `files` by path on 127.0.0.1; `/redirect?to=URL` answers 302 to URL; `/status/N`
    answers N; `/failing-bucket/...` answers 503 (an S3 endpoint failing). `hits` counts
    requests by path."""

    port: int = 0
    files: dict[str, bytes] = field(default_factory=dict)
    hits: dict[str, int] = field(default_factory=dict)
    host_headers: list[str] = field(default_factory=list)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return f"{self.origin}/{path.lstrip('/')}"


def _handler(server: ImageServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            path, _, query = self.path.partition("?")
            server.hits[path] = server.hits.get(path, 0) + 1
            server.host_headers.append(self.headers.get("Host", ""))
            if path == "/redirect":
                self.send_response(302)
                self.send_header("Location", query.removeprefix("to="))
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if path.startswith("/status/") or path.startswith("/failing-bucket/"):
                code = 503 if path.startswith("/failing-bucket/") else 0
                self.send_response(code or int(path.rsplit("/", 1)[1]))
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = server.files.get(path)
            if body is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


@pytest.fixture(scope="session")
def image_server() -> Iterator[ImageServer]:
    state = ImageServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    state.port = int(httpd.server_address[1])
    thread = threading.Thread(target=httpd.serve_forever, name="image-server", daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def count_forwards() -> Callable[..., list[int]]:
    """Wrap a runner's model forward: returns the list of batch sizes (images) it was called
    with; `should_fail(pixel_values)` may return an exception to raise instead."""

    def install(
        runner: Any, should_fail: Callable[[Any], BaseException | None] | None = None
    ) -> list[int]:
        model = runner.model
        seen: list[int] = []
        real = model.forward

        def forward(*args: Any, **kwargs: Any) -> Any:
            pixels = kwargs.get("pixel_values", args[0] if args else None)
            seen.append(int(pixels.shape[0]) if pixels is not None else -1)
            error = should_fail(pixels) if should_fail is not None else None
            if error is not None:
                raise error
            return real(*args, **kwargs)

        model.forward = forward
        return seen

    return install
