"""Write the config a training process reads so that it reads back exactly these values.

mmengine's ``Config.fromfile`` rewrites the *text* of a config file before parsing it: it
substitutes ``{{fileDirname}}``, ``{{fileBasename}}``, ``{{fileBasenameNoExtension}}``,
``{{fileExtname}}``, ``{{$VAR}}`` / ``{{$VAR:default}}`` and ``{{_base_.key}}`` wherever they
appear, string literals included. The benchmark puts paths it did not choose into its configs
(the data root, the work directory that holds the checkpoint copy), so a folder or file named
``T{{$NOPE:X}}`` would make the trainer read another path than the one recorded, and a
directory name holding a quote, substituted by ``{{fileDirname}}``, would end a string literal
and turn the rest of the name into code. :func:`dump_config` writes every string that holds a
brace with the brace as an escape (``\\x7b``, ``\\x7d``), which Python reads back as the same
string and which none of mmengine's patterns match, then checks the written text: no ``{{``
left, and the same values as the config when read as data.
"""
import ast
import io
import tokenize

from ..config_data import parse_config_text


class UnsafeConfigText(ValueError):
    """A config could not be written as text that reads back as its own values."""


def safe_config_text(cfg):
    """``cfg.pretty_text`` with the braces of every string literal escaped (see above).

    Raises:
        UnsafeConfigText: the text would not read back as the same values.
    """
    text = cfg.pretty_text
    out, last = [], (1, 0)
    lines = text.splitlines(keepends=True)
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type != tokenize.STRING or not ({'{', '}'} & set(tok.string)):
            continue
        out.append(_between(lines, last, tok.start))
        value = ast.literal_eval(tok.string)
        out.append(repr(value).replace('{', '\\x7b').replace('}', '\\x7d'))
        last = tok.end
    out.append(_between(lines, last, (len(lines) + 1, 0)))
    safe = ''.join(out)
    if '{{' in safe or parse_config_text(safe) != parse_config_text(text):
        raise UnsafeConfigText('the benchmark config could not be written so that mmengine '
                               'reads back the same values; a value holds "{{" outside a '
                               'string')
    return safe


def _between(lines, start, end):
    """The text from ``start`` to ``end`` ((row, col), rows from 1) of ``lines``."""
    (r0, c0), (r1, c1) = start, end
    if r0 == r1:
        return lines[r0 - 1][c0:c1] if r0 <= len(lines) else ''
    parts = [lines[r0 - 1][c0:]] + lines[r0:r1 - 1]
    if r1 <= len(lines):
        parts.append(lines[r1 - 1][:c1])
    return ''.join(parts)


def dump_config(cfg, path):
    """Write :func:`safe_config_text` of ``cfg`` to ``path`` atomically."""
    from ..fileio import atomic_write
    atomic_write(path, safe_config_text(cfg).encode('utf-8'))
    return path
