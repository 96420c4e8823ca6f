"""The fields of a multipart/form-data body, parsed the way vLLM's server parses them.

vLLM reads forms with Starlette, which uses python-multipart: a part is a field unless its
Content-Disposition names a `filename`, its name is taken from that header by
python-multipart's own option parser (so `name=model` unquoted counts too), and a repeated
field keeps its last value. The gateway uses the same parser, so it sees the model the
backend will serve; and since "the first or the last" is exactly where a check and a
backend can disagree, a body that names `model` twice is refused outright.
"""

from __future__ import annotations

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from vllm_gateway.errors import GatewayError

MAX_FIELDS = 64
MAX_FIELD_BYTES = 64 * 1024


def _bad(message: str, param: str | None = None) -> GatewayError:
    return GatewayError(400, message, "invalid_request", param=param)


class _Collector:
    """python-multipart callbacks keeping the non-file fields, skipping file contents."""

    def __init__(self) -> None:
        self.fields: dict[str, str] = {}
        self.repeated: set[str] = set()
        self._header_name = b""
        self._header_value = b""
        self._disposition = b""
        self._value: bytearray | None = None
        self._name = ""

    def on_part_begin(self) -> None:
        self._disposition = b""
        self._value = None

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        if self._header_name.strip().lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name, self._header_value = b"", b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        name = options.get(b"name")
        if name is None or b"filename" in options:
            return  # a file (or a nameless part): its bytes are not a field
        self._name = name.decode("utf-8", "replace")
        self._value = bytearray()

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._value is not None:
            self._value += data[start:end]
            if len(self._value) > MAX_FIELD_BYTES:
                raise _bad(f"form field {self._name!r} is too large", self._name)

    def on_part_end(self) -> None:
        if self._value is None:
            return
        if self._name in self.fields:
            self.repeated.add(self._name)
        if len(self.fields) >= MAX_FIELDS:
            raise _bad(f"the form has more than {MAX_FIELDS} fields")
        self.fields[self._name] = self._value.decode("utf-8", "replace")
        self._value = None


def multipart_fields(body: bytes, content_type: str) -> dict[str, str]:
    """The form's non-file fields; a 400/415 GatewayError when it is not a usable form."""
    kind, options = parse_options_header(content_type)
    if kind != b"multipart/form-data":
        raise GatewayError(
            415, "Content-Type must be multipart/form-data", "unsupported_media_type"
        )
    boundary = options.get(b"boundary")
    if not boundary:
        raise _bad("multipart/form-data needs a boundary")
    collector = _Collector()
    callbacks = {
        "on_part_begin": collector.on_part_begin,
        "on_header_field": collector.on_header_field,
        "on_header_value": collector.on_header_value,
        "on_header_end": collector.on_header_end,
        "on_headers_finished": collector.on_headers_finished,
        "on_part_data": collector.on_part_data,
        "on_part_end": collector.on_part_end,
    }
    parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
    try:
        parser.write(body)
        parser.finalize()
    except MultipartParseError:
        raise _bad("the multipart/form-data body is malformed") from None
    if "model" in collector.repeated:
        raise _bad("the form names `model` more than once", "model")
    return collector.fields
