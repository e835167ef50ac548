"""Write superstep executors in Python (built with componentize-py).

An executor is a subclass of :class:`Executor` with a JSON-serialisable ``state`` dict
and a ``handle`` method; :func:`export` turns it into the component's exports, with
``snapshot`` and ``restore`` done for you (the state as JSON)::

    from superstep_guest import Executor, export

    class Upper(Executor):
        def __init__(self):
            self.state = {"count": 0}

        def handle(self, ctx, message):
            ctx.send("text", message.json().upper())
            self.state["count"] += 1

    WitWorld = export(Upper)

Build: ``superstep-guest-build app.py upper.wasm`` (installed with this package: ``pip
install <superstep>/sdk/python``), which runs componentize-py with the WIT world this
package carries.
"""

import json

from componentize_py_types import Err
from wit_world.imports import context as _host
from wit_world.imports import types as _types

_LEVELS = {
    "trace": _types.Level.TRACE,
    "debug": _types.Level.DEBUG,
    "info": _types.Level.INFO,
    "warn": _types.Level.WARN,
    "error": _types.Level.ERROR,
}


def to_json(value):
    """Encodes a value as compact UTF-8 JSON, as the Rust SDK does."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


class Incoming:
    """A message delivered to an executor."""

    def __init__(self, source, kind, body):
        self.source = source  # the sending executor ("$input" for the run's input)
        self.kind = kind  # the routing kind
        self.body = body  # bytes, JSON by convention

    def json(self):
        """Decodes the body as JSON."""
        try:
            return json.loads(self.body)
        except ValueError as e:
            raise ValueError(
                f"message of kind '{self.kind}' from '{self.source}' is not JSON: {e}"
            ) from None


class Context:
    """What an executor may do; every effect is buffered by the host until the barrier."""

    def __init__(self, executor_id, config):
        self.executor_id = executor_id
        self.config = config  # the manifest's config table, decoded

    def send(self, kind, value, target=None):
        """Sends ``value`` as JSON along every edge accepting ``kind``, or to ``target``."""
        self.send_bytes(kind, to_json(value), target)

    def send_bytes(self, kind, body, target=None):
        """Sends raw body bytes."""
        _host.send_message(_types.Message(kind, bytes(body)), target)

    def yield_output(self, kind, value):
        """Emits ``value`` as JSON as a workflow output."""
        _host.yield_output(_types.Message(kind, to_json(value)))

    def get_shared(self, key):
        """Reads a shared-state value as JSON (``None`` when absent)."""
        raw = _host.get_shared(key)
        return None if raw is None else json.loads(raw)

    def set_shared(self, key, value):
        """Writes a shared-state value as JSON; others see it after the barrier."""
        _host.set_shared(key, to_json(value))

    def delete_shared(self, key):
        """Deletes a shared-state value at the barrier."""
        _host.delete_shared(key)

    def request_info(self, kind, value):
        """Asks for outside input; returns the request id. The response reaches
        ``Executor.on_response`` in a later superstep."""
        return _host.request_info(_types.Message(kind, to_json(value)))

    def log(self, level, text):
        """Emits a log event; ``level`` is trace, debug, info, warn or error."""
        _host.log(_LEVELS[level], text)


class Executor:
    """Base class of an executor: override ``handle`` (and ``on_response`` if it asks
    for input). ``state`` is what checkpoints keep; it must be JSON-serialisable."""

    def __init__(self):
        self.state = {}

    def handle(self, ctx, message):
        raise NotImplementedError(f"executor '{ctx.executor_id}' does not handle messages")

    def on_response(self, ctx, request_id, response):
        raise NotImplementedError(f"executor '{ctx.executor_id}' asked for no input")


def _errors_as_err(call):
    """Runs ``call``; any exception becomes the WIT error string instead of a trap."""
    try:
        return call()
    except Err:
        raise
    except Exception as e:  # noqa: BLE001 - every guest error is reported, not trapped
        raise Err(f"{type(e).__name__}: {e}") from None


def export(executor_class):
    """Returns the ``WitWorld`` class componentize-py exports, backed by one instance of
    ``executor_class`` for the component instance's lifetime.

    The state is encoded at the end of every call that may change it, so that a state
    that is not JSON fails that call, naming why, and ``snapshot`` (which cannot fail
    but by trapping) returns what was encoded."""
    live = {}

    def keep_state():
        executor_id = live["ctx"].executor_id
        try:
            live["state"] = to_json(live["executor"].state)
        except (TypeError, ValueError) as e:
            raise Err(f"state of '{executor_id}' is not JSON: {e}") from None

    def call(work):
        def go():
            work()
            keep_state()

        _errors_as_err(go)

    class WitWorld:
        def init(self, executor_id, config):
            def go():
                decoded = json.loads(config) if config else {}
                live["ctx"] = Context(executor_id, decoded)
                live["executor"] = executor_class()

            call(go)

        def handle(self, envelope):
            message = envelope.message
            incoming = Incoming(envelope.source, message.kind, message.body)
            call(lambda: live["executor"].handle(live["ctx"], incoming))

        def on_response(self, request_id, response):
            incoming = Incoming(request_id, response.kind, response.body)
            call(lambda: live["executor"].on_response(live["ctx"], request_id, incoming))

        def snapshot(self):
            return live["state"]

        def restore(self, state):
            def go():
                live["executor"].state = json.loads(state)

            call(go)

    return WitWorld
