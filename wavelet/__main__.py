"""``python -m wavelet``: print build diagnostics; ``python -m wavelet demo``: a short demo."""

import sys


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "demo":
        from ._demo import demo

        demo()
        return 0
    from . import build_info

    for k, v in build_info().items():
        print(f"{k:16s} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
