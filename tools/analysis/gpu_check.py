"""Check the CUDA path on a machine with an NVIDIA GPU, in one command, and print one table.

    bash tools/gpu_check.sh [--out DIR] [--checks ops pretrain transfer speed]

The checks are the tests of tests/cuda (marked ``cuda``: elsewhere they are collected and
skipped with the reason) and the speed tool:

  ops       mmcv's CUDA kernels against its CPU kernels as the recipes call them: RoIAlign
            forward and input gradient (aligned or not, adaptive or fixed sampling), the
            Mask R-CNN recipe's RoI extractor on channels-last maps and under bf16 autocast,
            nms and batched_nms (the same boxes kept)
  pretrain  one bf16 AMP step of the ConvMAE and MixedAE pretraining recipes, shrunk to tiny
            models, through mmengine's Runner on generated ImageNet-format images
  transfer  10 iterations and one evaluation of the Mask R-CNN (ConvViT) and UperNet (PlainViT)
            recipes, shrunk, with their bf16 AMP, from the pretraining steps' checkpoints, on
            generated COCO / ADE20K-format data
  speed     tools/analysis/speed.py --arch base --device cuda (bf16 autocast)

The table (check | result | time) goes to stdout and to DIR/gpu_check.md; DIR also gets the
tests' JUnit report (cuda_tests.xml) and folders (pytest/), and speed/. Exit status: 0 when
every check passed, 1 when one failed (pytest's or the speed tool's output above the table
says why), 2 when this machine cannot run the CUDA path (no GPU visible, or mmcv without
CUDA ops; the reason is printed and nothing runs).
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)  # run from a checkout

TESTS = ('ops', 'pretrain', 'transfer')  # tests/cuda/test_cuda_<check>.py
CHECKS = TESTS + ('speed', )
SPEED_TIMEOUT_S = 240


def test_file(check):
    return osp.join('tests', 'cuda', f'test_cuda_{check}.py')


def read_junit(path):
    """check -> [(test name, outcome, first line of the message, seconds, recorded results)]
    from pytest's JUnit XML; a collection error counts under its module's check."""
    cases = {}
    for case in ET.parse(path).getroot().iter('testcase'):
        module = (case.get('classname') or case.get('name')).rsplit('.', 1)[-1]
        outcome, message = 'passed', ''
        for kind in ('failure', 'error', 'skipped'):
            found = case.find(kind)
            if found is not None:
                outcome = kind
                message = (found.get('message') or found.text or '').strip().splitlines()
                message = message[0] if message else ''
                break
        results = [p.get('value') for p in case.iter('property') if p.get('name') == 'result']
        cases.setdefault(module[len('test_cuda_'):], []).append(
            (case.get('name'), outcome, message, float(case.get('time') or 0), results))
    return cases


def test_row(check, cases):
    """(result, seconds) of one check's tests: every test must pass (a skip fails here)."""
    if not cases:
        return 'FAIL: no test ran', 0.0
    seconds = sum(case[3] for case in cases)
    failed = sorted((case for case in cases if case[1] != 'passed'),
                    key=lambda case: case[1] == 'skipped')  # failures and errors first
    if failed:
        name, outcome, message = failed[0][:3]
        return (f'FAIL: {len(failed)} of {len(cases)} did not pass; {name} {outcome}: '
                f'{message}'), seconds
    results = [result for case in cases for result in case[4]]
    return '; '.join([f'ok: {len(cases)} passed'] + results), seconds


def run_tests(checks, out):
    """Run the tests of ``checks`` in one pytest process; {check: (result, seconds)}."""
    report = osp.join(out, 'cuda_tests.xml')
    if osp.exists(report):
        os.remove(report)
    cmd = [sys.executable, '-m', 'pytest', *[test_file(c) for c in checks], '-p',
           'no:cacheprovider', '-rfEs', f'--junitxml={report}', '-o', 'junit_family=xunit1',
           f'--basetemp={osp.join(out, "pytest")}']  # xunit1 keeps recorded properties
    code = subprocess.run(cmd, cwd=REPO).returncode
    if not osp.exists(report):
        return {c: (f'FAIL: pytest exited {code} without a report', 0.0) for c in checks}
    cases = read_junit(report)
    return {c: test_row(c, cases.get(c, [])) for c in checks}


def run_speed(out):
    """tools/analysis/speed.py on the Base models; (result, seconds)."""
    out = osp.join(out, 'speed')
    os.makedirs(out, exist_ok=True)
    cmd = [sys.executable, osp.join(REPO, 'tools', 'analysis', 'speed.py'), '--arch', 'base',
           '--device', 'cuda', '--out', out]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True,
                              timeout=SPEED_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return f'FAIL: speed.py took over {SPEED_TIMEOUT_S} s', time.perf_counter() - start
    seconds = time.perf_counter() - start
    with open(osp.join(out, 'speed.log'), 'w') as f:
        f.write(proc.stdout + proc.stderr)
    if proc.returncode:
        print(proc.stdout + proc.stderr, file=sys.stderr)
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:]
        return f'FAIL: speed.py exited {proc.returncode}: {" ".join(tail)}', seconds
    with open(osp.join(out, 'speed.json')) as f:
        result = json.load(f)
    rows = {r['key']: r for r in result['rows']}
    parts = [f'{len(rows)} rows ({result["machine"]["dtype"]})']
    for key in ('convmae_skip', 'mixedae'):
        if rows.get(key, {}).get('time_vs_mae') is not None:
            parts.append(f'{key} {rows[key]["time_vs_mae"]:.2f}x MAE time')
    targets = result.get('targets') or []
    parts.append(f'targets met {sum(t["met"] for t in targets)}/{len(targets)}; '
                 f'{out}/speed.md')
    return 'ok: ' + ', '.join(parts), seconds


def table(rows):
    lines = ['| check | result | time |', '|---|---|---:|']
    lines += [f'| {name} | {result.replace("|", "/")} | {seconds:.1f} s |'
              for name, result, seconds in rows]
    return '\n'.join(lines) + '\n'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog='tools/gpu_check.sh', description=__doc__.split('\n\n    bash')[0],
        epilog=__doc__.split('\n\n', 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', default=osp.join(REPO, 'work_dirs', 'gpu_check'),
                        help='folder for gpu_check.md, the tests and speed/ '
                             '(default: %(default)s)')
    parser.add_argument('--checks', nargs='+', choices=CHECKS, default=list(CHECKS),
                        help='the checks to run (default: all)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from mixedconv.env import cuda_status
    status = cuda_status()
    reason = status.unusable()
    if reason:
        print(f'gpu_check: FAILED: {reason}', file=sys.stderr)
        return 2
    out = osp.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    machine = '; '.join(' '.join(line.split()) for line in status.lines())
    print(f'gpu_check: {machine}', flush=True)
    rows = [('environment', machine, 0.0)]
    tests = [c for c in TESTS if c in args.checks]
    if tests:
        results = run_tests(tests, out)
        rows += [(c, *results[c]) for c in tests]
    if 'speed' in args.checks:
        rows.append(('speed', *run_speed(out)))
    text = table(rows)
    with open(osp.join(out, 'gpu_check.md'), 'w') as f:
        f.write(text)
    print()
    print(text, end='')
    failed = [name for name, result, _ in rows if result.startswith('FAIL')]
    if failed:
        print(f'gpu_check: FAILED: {", ".join(failed)} (the output above says why)',
              file=sys.stderr)
        return 1
    print(f'gpu_check: all {len(rows) - 1} checks passed; wrote {out}/gpu_check.md')
    return 0


if __name__ == '__main__':
    sys.exit(main())
