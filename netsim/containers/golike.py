"""Output formats of the Go originals: JSON as encoding/json writes it, durations, times."""

import datetime
import json


def go_json(value, indent=None):
    """encoding/json output with HTML characters escaped, keys in the order given.

    Go sorts map keys and keeps struct fields in declaration order: callers build dicts in
    that order (`sorted_map` for maps).
    """
    if indent is None:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    else:
        text = json.dumps(value, indent=indent, ensure_ascii=False)
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def sorted_map(mapping):
    return {key: mapping[key] for key in sorted(mapping)}


def go_duration(seconds):
    """time.Duration.String() for the values the built-ins print: 0s, 250ms, 1.5s, 2m0s."""
    if seconds == 0:
        return "0s"
    if abs(seconds) < 1:
        return f"{seconds * 1000:g}ms"
    if abs(seconds) < 60:
        return f"{seconds:g}s"
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}m{rest:g}s"


def go_now():
    """time.Now() as fmt prints it: 2024-05-01 12:00:00.123456 +0000 UTC."""
    return datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S.%f %z %Z")
