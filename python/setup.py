"""setup.py — builds libattn with the project's CMake (the tree one level up, or ATTN_SOURCE_DIR) and puts
libattn.so inside the package, where attn/_lib.py looks first. `pip install ./python` runs it; it needs
cmake, a C compiler, OpenBLAS, libpng and zlib (`make deps` at the top of the tree installs them)."""
import os
import re
import shutil
import subprocess

from setuptools import Distribution, setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.abspath(os.environ.get("ATTN_SOURCE_DIR", os.path.join(HERE, "..")))


def version():
    with open(os.path.join(SOURCE, "CMakeLists.txt")) as f:
        return re.search(r"project\(attn VERSION ([0-9.]+)", f.read()).group(1)


class BuildWithCMake(build_py):
    def run(self):
        super().run()
        if not os.path.exists(os.path.join(SOURCE, "CMakeLists.txt")):
            raise RuntimeError(f"attn: the C sources are not at {SOURCE}: build from the source tree "
                               "(pip install ./python) or set ATTN_SOURCE_DIR")
        if shutil.which("cmake") is None:
            raise RuntimeError("attn: cmake not found (on Debian: `make deps` at the top of the tree, or "
                               "apt-get install cmake build-essential pkg-config libopenblas-openmp-dev libpng-dev)")
        tmp = os.path.join(self.get_finalized_command("build").build_temp, "cmake")
        jobs = str(os.cpu_count() or 2)
        subprocess.check_call(["cmake", "-S", SOURCE, "-B", tmp, "-DCMAKE_BUILD_TYPE=Release", "-DATTN_TESTS=OFF"])
        subprocess.check_call(["cmake", "--build", tmp, "--target", "attn_shared", "-j", jobs])
        dest = os.path.join(self.build_lib, "attn", "libattn.so")
        shutil.copyfile(os.path.realpath(os.path.join(tmp, "libattn.so")), dest)
        os.chmod(dest, 0o755)


class BinaryDistribution(Distribution):
    def has_ext_modules(self):          # the wheel holds a shared library: tag it for this platform
        return True


setup(version=version(), cmdclass={"build_py": BuildWithCMake}, distclass=BinaryDistribution)
