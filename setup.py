"""Packaging for mixedconv: ConvMAE and MixedAE for OpenMMLab."""
import os.path as osp

from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))


def read_requirements(name):
    """Requirement lines of ``requirements/<name>``, without comments and ``-r`` includes."""
    with open(osp.join(HERE, 'requirements', name)) as f:
        lines = (line.split('#')[0].strip() for line in f)
        return [line for line in lines if line and not line.startswith('-')]


def read_version():
    scope = {}
    with open(osp.join(HERE, 'mixedconv', 'version.py')) as f:
        exec(f.read(), scope)
    return scope['__version__']


setup(
    name='mixedconv',
    version=read_version(),
    description='ConvMAE and MixedAE pretraining and transfer for OpenMMLab',
    long_description=open(osp.join(HERE, 'README.md')).read(),
    long_description_content_type='text/markdown',
    packages=find_packages(include=['mixedconv', 'mixedconv.*']),
    # the recipe configs, in the OpenMMLab place (mixedconv/.mim/configs: a link to configs/
    # in the checkout, a copy in the wheel) that mixedconv:: names resolve in
    package_data={'mixedconv': ['.mim/model-index.yml', '.mim/configs/*/*.py']},
    python_requires='>=3.9',
    install_requires=read_requirements('runtime.txt') + read_requirements('mminstall.txt'),
    extras_require={'tests': read_requirements('tests.txt')},
    license='Apache-2.0',
)
