"""The results shared by the benchmark and the leaderboard: the summary record, checkpoint
hashes, what a work dir logged, and where method names come from."""
import hashlib
import json
import os
import os.path as osp
import stat
import subprocess

import pytest
import torch

from mixedconv.families import METHODS
from mixedconv.results import (SHORT_SHA, SummaryError, TaskSummary, checkpoint_sha256,
                               copy_and_hash, current_git_commit, infer_method, read_summary,
                               sha256_of, short_sha, summary_path, utc_now, write_summary)
from mixedconv.results.protocols import RECIPE_PROTOCOLS, protocol_of_recipe
from mixedconv.results.workdir import final_checkpoint_name

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def make_record(**fields):
    base = dict(task='coco-maskrcnn', status='done', method='ConvMAE', backbone='ConvViT-B',
                pretrain_epochs=1600, metrics={'coco/bbox_mAP': 0.519, 'coco/segm_mAP': 0.462},
                checkpoint='/ckpts/convmae.pth',
                checkpoint_sha256=hashlib.sha256(b'convmae').hexdigest())
    return TaskSummary(**{**base, **fields})


def test_summary_round_trip(tmp_path):
    ckpt = tmp_path / 'ckpt.pth'
    ckpt.write_bytes(b'weights' * 1000)
    rec = make_record(checkpoint=str(ckpt), checkpoint_sha256=sha256_of(str(ckpt)),
                      config='configs/x.py', git_commit='abc', wall_time_s=12.5,
                      started=utc_now(), finished=utc_now(), pretrain_iters=30,
                      protocol='UperNet, 512 crop, 160k iters', reduced=True)
    path = summary_path(str(tmp_path / 'work'), 'coco-maskrcnn')
    write_summary(path, rec)
    assert read_summary(path) == rec
    assert os.listdir(osp.dirname(path)) == ['summary.json']  # no temp file left behind
    assert rec.checkpoint_sha256 == hashlib.sha256(b'weights' * 1000).hexdigest()
    rec.status, rec.metrics = 'failed', {}  # rewriting replaces the record
    write_summary(path, rec)
    assert read_summary(path).status == 'failed'


def test_summary_has_the_mode_of_every_other_file(tmp_path):
    """summary.json gets the permissions the umask gives any new file (0644 under 022),
    not mkstemp's 0600."""
    old = os.umask(0o022)
    try:
        path = summary_path(str(tmp_path), 'coco-maskrcnn')
        write_summary(path, make_record())
        (tmp_path / 'other').write_text('x')
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert stat.S_IMODE(os.stat(path).st_mode) == stat.S_IMODE(os.stat(tmp_path / 'other').st_mode)


def test_summaries_of_the_first_layout_still_read(tmp_path):
    """Version-1 summaries (no pretrain_iters, protocol, reduced, released) read with defaults."""
    data = make_record().to_dict()
    for key in ('pretrain_iters', 'protocol', 'reduced', 'released'):
        data.pop(key)
    data['schema_version'] = 1
    path = tmp_path / 'summary.json'
    path.write_text(json.dumps(data))
    record = read_summary(str(path))
    assert (record.pretrain_iters, record.protocol, record.reduced, record.released) == \
        (None, None, False, False)
    data['schema_version'] = 4
    path.write_text(json.dumps(data))
    with pytest.raises(SummaryError, match='schema_version 4 is not one of the supported'):
        read_summary(str(path))


def test_current_git_commit(tmp_path):
    assert current_git_commit(str(tmp_path)) is None  # not a checkout
    git = ['git', '-C', str(tmp_path), '-c', 'user.name=t', '-c', 'user.email=t@t']
    subprocess.run(git + ['init', '-q'], check=True)
    (tmp_path / 'f.txt').write_text('a')
    subprocess.run(git + ['add', 'f.txt'], check=True)
    subprocess.run(git + ['commit', '-qm', 'init'], check=True)
    head = subprocess.run(git + ['rev-parse', 'HEAD'], capture_output=True, text=True,
                          check=True).stdout.strip()
    assert current_git_commit(str(tmp_path)) == head
    (tmp_path / 'f.txt').write_text('b')
    assert current_git_commit(str(tmp_path)) == head + '-dirty'


def test_copy_and_hash_keeps_the_hashed_bytes(tmp_path):
    src = tmp_path / 'src.pth'
    src.write_bytes(b'weights' * 100000)
    sha = copy_and_hash(str(src), str(tmp_path / 'run' / 'copy.pth'))
    src.write_bytes(b'something else')  # the source changes after it was read
    copy = tmp_path / 'run' / 'copy.pth'
    assert sha == hashlib.sha256(copy.read_bytes()).hexdigest() == \
        hashlib.sha256(b'weights' * 100000).hexdigest()
    assert not os.access(copy, os.W_OK) or os.geteuid() == 0
    assert stat.S_IMODE(os.stat(copy).st_mode) == 0o444
    assert os.listdir(tmp_path / 'run') == ['copy.pth']
    assert short_sha(sha) == sha[:SHORT_SHA]


def test_checkpoint_hash_reads_only_checkpoint_files_once(tmp_path):
    for legacy in (False, True):
        path = tmp_path / f'ckpt{legacy}.pth'
        torch.save({'w': torch.ones(4)}, path, _use_new_zipfile_serialization=not legacy)
        assert checkpoint_sha256(str(path)) == sha256_of(str(path))
    other = tmp_path / 'images.zip'
    other.write_bytes(b'PK\x03\x04' + bytes(26) + b'x' * 64)
    assert checkpoint_sha256(str(other)) is None
    fifo = tmp_path / 'pipe.pth'
    os.mkfifo(fifo)
    assert checkpoint_sha256(str(fifo)) is None  # not opened: it would block
    assert checkpoint_sha256(str(tmp_path / 'missing.pth')) is None
    if osp.exists('/proc/kmsg'):
        assert checkpoint_sha256('/proc/kmsg') is None
    large = tmp_path / 'large.pth'
    torch.save({'w': torch.ones(1000)}, large)
    with pytest.warns(UserWarning, match='larger than the 100 bytes'):
        assert checkpoint_sha256(str(large), limit=100) is None
    # once per file: a second call does not read it again
    once = tmp_path / 'once.pth'
    torch.save({'w': torch.ones(4)}, once)
    first = checkpoint_sha256(str(once))
    info = os.stat(once)
    with open(once, 'r+b') as f:  # same size and time, other bytes
        f.seek(info.st_size - 8)
        f.write(b'\xff' * 8)
    os.utime(once, ns=(info.st_atime_ns, info.st_mtime_ns))
    assert checkpoint_sha256(str(once)) == first != sha256_of(str(once))


def test_method_names_come_from_the_method_table():
    assert infer_method('work_dirs/convmae_base_1600ep.pth') == 'ConvMAE'
    assert infer_method('mixedae_vit-b_1600e_encoder.pth') == 'MixedAE'
    assert infer_method('mae_pretrain_vit_base.pth') == 'MAE'
    assert infer_method('resnet50.pth') is None
    for method in METHODS.values():
        assert infer_method(f'x_{method.key}_y') == method.name


def test_every_transfer_recipe_has_its_protocol():
    """A shipped transfer recipe's results carry the protocol of the official run it
    reproduces; an unknown config has none."""
    for method in METHODS.values():
        for task, config in method.transfer_configs.items():
            assert protocol_of_recipe(config) == RECIPE_PROTOCOLS[config], (method.name, task)
            assert protocol_of_recipe(osp.join('/elsewhere', osp.basename(config)))
            assert osp.isfile(osp.join(REPO, config))
    assert protocol_of_recipe('configs/mine.py') is None


def test_final_checkpoint_names():
    assert final_checkpoint_name(dict(type='IterBasedTrainLoop', max_iters=10)) == 'iter_10.pth'
    assert final_checkpoint_name(dict(max_epochs=25)) == 'epoch_25.pth'
    assert final_checkpoint_name({}) is None
