"""The figures a reader meets first (the index leads with 99's): no blank band above a tall grid of images, and the
price of invertibility's labels clear of each other, of its legend, inside its panel."""
from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image

from inverse_vae.study import figures, summary

matplotlib.use("Agg")
ROOT = Path(__file__).resolve().parents[2]


def test_a_tall_grid_of_images_starts_with_its_title_not_a_blank_band(tmp_path):
    rows = [np.zeros((6, 784)) for _ in range(38)]  # black digits, as many rows as the family's recovery_by_run
    figures.image_rows(rows, [f"run {r}" for r in range(38)], tmp_path / "rows.png", title="A title")
    image = np.asarray(Image.open(tmp_path / "rows.png").convert("L"))
    first_ink = next(i for i in range(image.shape[0]) if (image[i] < 200).any())
    first_image = next(i for i in range(image.shape[0]) if (image[i] < 50).sum() > image.shape[1] // 4)
    assert first_ink < 15 and first_image - first_ink < 40, (first_ink, first_image)  # title, then the images


def test_the_price_of_invertibility_labels_overlap_nothing(tmp_path):
    reports = ROOT / "reports"
    frame = summary.family_frame(reports, ROOT / "params", lambda line: None)
    fig = figures.runs_overview(frame, tmp_path / "overview.png", summary.price_sweep(reports))
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[2]
    labels = [t for t in ax.texts if t.get_text()]
    assert len(labels) >= 5
    boxes = [t.get_window_extent(renderer) for t in labels]
    clashes = [(labels[i].get_text(), labels[j].get_text()) for i in range(len(boxes)) for j in range(i + 1, len(boxes))
               if boxes[i].overlaps(boxes[j])]
    assert not clashes, clashes
    legend, panel = ax.get_legend().get_window_extent(renderer), ax.get_window_extent(renderer)
    assert not [t.get_text() for t, box in zip(labels, boxes) if box.overlaps(legend)]
    inside = panel.expanded(1, 1).padded(1)  # a pixel's grace: a label may end on the panel's edge
    assert all(inside.contains(box.x0, box.y0) and inside.contains(box.x1, box.y1) for box in boxes)
