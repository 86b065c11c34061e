"""The worker pipe's messages without processes: framing, images as frames, params and results round trips, errors
rebuilt with their builtin type, exit causes in words; and the named model operations on the in-process thread."""

from __future__ import annotations

import io
import threading

import pytest
from PIL import Image

from app.errors import UserError, describe_error, is_expected
from app.jobs.job import JobResult
from app.jobs.service import JobService
from app.params import GenerationParams, Img2ImgParams
from app.worker import protocol
from app.worker.ops import MODEL_OPS
from app.worker.remote import ModelState
from app.worker.supervisor import _builtin_error, exit_cause


def _image(color: tuple[int, int, int], size: tuple[int, int] = (8, 6)) -> Image.Image:
    return Image.new("RGB", size, color)


def test_messages_round_trip_with_frames():
    buf = io.BytesIO()
    protocol.write_message(buf, {"type": "job", "n": 1}, [b"abc", b""])
    protocol.write_message(buf, {"type": "done"})
    buf.seek(0)
    assert protocol.read_message(buf) == ({"type": "job", "n": 1}, [b"abc", b""])
    assert protocol.read_message(buf) == ({"type": "done"}, [])
    with pytest.raises(EOFError):
        protocol.read_message(buf)


def test_a_truncated_or_corrupt_stream_is_refused():
    buf = io.BytesIO()
    protocol.write_message(buf, {"type": "job"}, [b"x" * 100])
    with pytest.raises(EOFError):
        protocol.read_message(io.BytesIO(buf.getvalue()[:-10]))
    with pytest.raises(ValueError, match="corrupt"):
        protocol.read_message(io.BytesIO(b"\xff\xff\xff\xff\x00\x00\x00\x00"))


def test_generation_params_cross_with_their_images():
    init, mask = _image((10, 20, 30)), Image.new("L", (8, 6), 255)
    params = GenerationParams(prompt="a cat", steps=3, img2img=Img2ImgParams(init_images=[init], mask=mask),
                              extras={"alwayson_scripts": {"x": {"args": [_image((1, 2, 3)), 5]}}})
    frames: list[bytes] = []
    wire = protocol.pack_params(params, frames)
    assert len(frames) == 3 and all(f.startswith(b"\x89PNG") for f in frames)
    back = protocol.unpack_params(wire, frames)
    assert isinstance(back, GenerationParams) and back.prompt == "a cat" and back.steps == 3
    assert back.img2img.init_images[0].getpixel((0, 0)) == (10, 20, 30)
    assert back.img2img.mask.mode == "L" and back.img2img.mask.size == (8, 6)
    assert back.extras["alwayson_scripts"]["x"]["args"][0].getpixel((1, 1)) == (1, 2, 3)
    plain = protocol.unpack_params(protocol.pack_params({"image": init, "upscaler_1": "Lanczos"}, frames), frames)
    assert plain["upscaler_1"] == "Lanczos" and plain["image"].size == (8, 6)


def test_results_cross_as_png_with_the_image_text():
    image = _image((200, 100, 0))
    image.info["parameters"] = "a cat\nSteps: 3"
    result = JobResult(images=[image], infotexts=["a cat\nSteps: 3"], seeds=[5], info={"seed": 5},
                       warnings=["w"], saved_paths=["/out/1.png"], interrupted=True, value={"title": "m"})
    frames: list[bytes] = []
    back = protocol.unpack_result(protocol.pack_result(result, frames), frames)
    assert back.images[0].getpixel((0, 0)) == (200, 100, 0) and back.images[0].info["parameters"] == "a cat\nSteps: 3"
    assert (back.infotexts, back.seeds, back.info, back.warnings, back.saved_paths, back.interrupted, back.value) == (
        ["a cat\nSteps: 3"], [5], {"seed": 5}, ["w"], ["/out/1.png"], True, {"title": "m"})


def test_worker_errors_keep_their_builtin_type_and_text():
    refused = _builtin_error(["UnsafeFile", "UserError", "ValueError", "Exception"], "the file is unsafe", True)
    assert isinstance(refused, ValueError) and is_expected(refused) and describe_error(refused) == "the file is unsafe"
    bug = _builtin_error(["KeyError", "LookupError", "Exception"], "KeyError: 'x'", False)
    assert isinstance(bug, KeyError) and not isinstance(bug, UserError) and bug.described == "KeyError: 'x'"
    assert isinstance(_builtin_error(["OutOfMemoryError", "RuntimeError"], "oom", False), RuntimeError)


def test_exit_causes_in_words():
    assert exit_cause(-9) == "was killed (signal 9, SIGKILL)"
    assert exit_cause(-11) == "was killed (signal 11, SIGSEGV)"
    assert exit_cause(3) == "exited with code 3"
    assert exit_cause(None) == "stopped answering"


class _Handle:
    def __init__(self, title: str) -> None:
        self.title, self.sha256 = title, "ab" * 32
        self.info = type("Info", (), {"sha256": "ab" * 32, "filename": f"/m/{title}"})()
        self.size_multiple = 16


class _Manager:
    def __init__(self) -> None:
        self.current: _Handle | None = None
        self.threads: list[str] = []
        self.embeddings = None

    def get(self, title: str | None) -> _Handle:
        if title == "broken":
            raise ValueError("could not load checkpoint broken")
        self.threads.append(threading.current_thread().name)
        self.current = _Handle(title or "first")
        return self.current

    def unload(self) -> None:
        self.current = None


def test_named_model_operations_run_on_the_worker_thread_in_thread_mode():
    manager = _Manager()
    service = JobService(manager=manager, runners=MODEL_OPS)
    service.start()
    try:
        state = ModelState.from_dict(service.model_op("load_model", title="alpha"))
        assert state is not None and state.title == "alpha" and state.size_multiple == 16 and state.info.sha256
        assert manager.threads == [service._thread.name]
        with pytest.raises(ValueError, match="could not load checkpoint broken"):
            service.model_op("load_model", title="broken")
        assert service.model_op("list_embeddings") == {"loaded": {}, "skipped": {}}
        assert service.model_op("unload_model") is None and manager.current is None
        assert service.model_op("model_info") is None
        with pytest.raises(ValueError, match="not a model operation"):
            service.model_op("txt2img")
        assert service.waiting_generations == 0
    finally:
        service.shutdown()
