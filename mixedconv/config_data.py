"""Read config text that someone else wrote as data, never as code.

mmengine stores the config of a run as Python text: ``Runner`` dumps it into the work
directory (``<work_dir>/<name>.py``) and into ``<timestamp>/vis_data/config.py``, and
``save_checkpoint`` puts it into ``meta['cfg']`` of every checkpoint. ``Config.fromstring`` and
``Config.fromfile`` read such text by *executing* it, so a checkpoint or a results folder that
somebody hands us could run any code through them. :func:`parse_config_text` reads the same
text with :mod:`ast` and accepts only what mmengine's ``Config.pretty_text`` writes: top-level
assignments of literals (numbers, strings, bytes, ``True``/``False``/``None``), lists, tuples,
sets, ``{...}`` dicts and ``dict(key=value, ...)`` calls. Anything else (an import, a function
call, an attribute, a name that is not a literal) is refused with the line that holds it.
"""
import ast
import warnings

__all__ = ['ConfigTextError', 'guard_checkpoint_configs', 'parse_config_text',
           'read_config_file', 'strip_checkpoint_configs']


class ConfigTextError(ValueError):
    """Config text holds something other than literal data; the message names the line."""


def parse_config_text(text, source='<config text>'):
    """The top-level assignments of ``text`` as a dict, read without running anything.

    Args:
        text (str): Python config text as mmengine dumps it.
        source (str): Shown in error messages (a file name, ``meta['cfg'] of X``).

    Returns:
        dict: ``{name: value}`` for every top-level ``name = <literal>`` statement.

    Raises:
        ConfigTextError: the text is not Python, or a statement or value is not literal data.
    """
    try:
        tree = ast.parse(text, filename=source)
    except SyntaxError as err:
        raise ConfigTextError(f'{source} is not Python config text: {err.msg} '
                              f'(line {err.lineno})') from None
    values = {}
    for node in tree.body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and \
                isinstance(node.value.value, str):
            continue  # a docstring
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)):
            raise ConfigTextError(
                f'{source}, line {node.lineno}: only "name = value" assignments are read as '
                f'data, found {type(node).__name__.lower()} "{_snippet(text, node)}"')
        values[node.targets[0].id] = _literal(node.value, text, source)
    return values


def read_config_file(path):
    """:func:`parse_config_text` of the file at ``path`` (UTF-8)."""
    with open(path, encoding='utf-8', errors='replace') as f:
        return parse_config_text(f.read(), source=str(path))


def strip_checkpoint_configs(checkpoint, source='checkpoint'):
    """Take the runnable config texts out of a loaded checkpoint (in place), keeping the data
    mmengine needs from them.

    mmengine (0.10.7) executes a checkpoint's config text with ``Config.fromstring`` in three
    places: ``Runner.resume`` and ``FlexibleRunner.resume`` read ``meta['config']`` (the key
    mmcv 1.x runners wrote) for its ``gpu_ids``; an inferencer given weights without a config
    rebuilds the model from ``message_hub['runtime_info']['cfg']`` or ``meta['cfg']``.
    ``meta['config']`` becomes ``gpu_ids = [...]`` when the text declares that as a list of
    ints (read with :func:`parse_config_text`; a one-line text we write), else empty, so the
    resume's GPU-count check still runs. ``meta['cfg']`` and the message hub's ``cfg`` are
    removed: an inferencer then asks for the config, and a resumed run keeps the config
    text of the current run in its message hub (mmengine would otherwise copy the
    checkpoint's into every later checkpoint).

    Args:
        checkpoint: what a checkpoint loader returned; anything but a dict is returned as is.
        source (str): names the file in the warning about text that is not literal data.

    Returns:
        the same ``checkpoint``.
    """
    if not isinstance(checkpoint, dict):
        return checkpoint
    meta = checkpoint.get('meta')
    if isinstance(meta, dict):
        if 'config' in meta:
            meta['config'] = _gpu_ids_text(meta['config'], f"meta['config'] of {source}")
        meta.pop('cfg', None)
    hub = checkpoint.get('message_hub')
    info = hub.get('runtime_info') if isinstance(hub, dict) else None
    if isinstance(info, dict):
        info.pop('cfg', None)
    return checkpoint


def _gpu_ids_text(text, source):
    try:
        gpu_ids = parse_config_text(str(text), source).get('gpu_ids')
    except ConfigTextError as err:
        warnings.warn(f'{err}; it is ignored')
        return ''
    if isinstance(gpu_ids, (list, tuple)) and all(
            isinstance(i, int) and not isinstance(i, bool) for i in gpu_ids):
        return f'gpu_ids = {list(gpu_ids)!r}\n'
    return ''


def guard_checkpoint_configs():
    """Pass every checkpoint mmengine loads through :func:`strip_checkpoint_configs`
    (idempotent).

    mmengine loads every checkpoint, whatever its scheme (local path, URL, ``open-mmlab://``)
    and whoever asks (``Runner``, ``FlexibleRunner`` and its strategies, any registered
    ``runner_type``, ``init_cfg=Pretrained``, inferencers), through
    ``CheckpointLoader.load_checkpoint``; the wrapper installed here is the one place where
    the config texts are made data.
    """
    from mmengine.runner.checkpoint import CheckpointLoader
    load = CheckpointLoader.load_checkpoint
    if getattr(load, 'strips_configs', False):
        return

    def load_checkpoint(cls, filename, map_location=None, logger='current'):
        return strip_checkpoint_configs(load(filename, map_location, logger), filename)

    load_checkpoint.strips_configs = True
    CheckpointLoader.load_checkpoint = classmethod(load_checkpoint)


def _literal(node, text, source):
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)) and \
            isinstance(node.operand, ast.Constant) and \
            isinstance(node.operand.value, (int, float, complex)) and \
            not isinstance(node.operand.value, bool):
        value = node.operand.value
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        items = [_literal(item, text, source) for item in node.elts]
        return {ast.List: list, ast.Tuple: tuple, ast.Set: set}[type(node)](items)
    if isinstance(node, ast.Dict):
        if any(key is None for key in node.keys):
            raise _refuse(node, text, source, '"**" unpacking')
        return {_literal(k, text, source): _literal(v, text, source)
                for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
            node.func.id == 'dict' and not node.args and \
            all(kw.arg is not None for kw in node.keywords):
        return {kw.arg: _literal(kw.value, text, source) for kw in node.keywords}
    raise _refuse(node, text, source, type(node).__name__.lower())


def _refuse(node, text, source, what):
    return ConfigTextError(
        f'{source}, line {node.lineno}: "{_snippet(text, node)}" ({what}) is not literal data; '
        'stored configs are read without running them, so only literals, lists, tuples, '
        'dicts and dict(...) are accepted')


def _snippet(text, node, limit=60):
    segment = ast.get_source_segment(text, node) or ''
    segment = ' '.join(segment.split())
    return segment if len(segment) <= limit else segment[:limit - 3] + '...'
