"""Write the fuzz seed corpus: the odd files of fastrec.demo.samples plus small real-looking JPEGs,
each prefixed with option bytes for the harnesses."""
import sys
from pathlib import Path

from fastrec.demo.samples import make_odd_files, make_tree


def main(out: str) -> None:
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    sources = Path(out_dir.parent / (out_dir.name + ".src"))
    files = list(make_odd_files(sources / "odd").values())
    files += make_tree(sources / "tree", classes=1, per_class=(3, 3), sizes="mixed", seed=5)
    n = 0
    for i, path in enumerate(sorted(files)):
        data = path.read_bytes()
        if len(data) > 200_000:
            continue
        (out_dir / f"seed{i:03d}").write_bytes(bytes([i * 37 % 256, i * 11 % 256, 80, i % 3]) + data)
        n += 1
    print(f"{n} seeds in {out_dir}")


if __name__ == "__main__":
    main(sys.argv[1])
