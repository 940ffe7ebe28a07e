"""depth_to_cloud against hand-computed pinhole projections on synthetic depth images."""
import numpy as np
import pytest

from seg_perception.core.pointcloud import CloudConfig, depth_to_cloud, pack_rgb, scale_intrinsics

# 4 x 6 depth image; fx = 2, fy = 4, cx = 2.5, cy = 1.5
K = np.array([[2.0, 0, 2.5], [0, 4.0, 1.5], [0, 0, 1]])


def small():
    depth = np.full((4, 6), 1000, np.uint16)  # 1 m
    depth[0, 5] = 2000
    depth[3, 0] = 1000
    labels = np.arange(24, dtype=np.uint8).reshape(4, 6)
    return depth, labels


def _point(cloud, label):
    i = np.flatnonzero(cloud.label == label)
    assert len(i) == 1
    return cloud.xyz[i[0]]


def test_hand_computed_projection():
    depth, labels = small()
    cloud = depth_to_cloud(depth, K, labels)
    # pixel (u=5, v=0), z = 2 m: x = (5 - 2.5) / 2 * 2 = 2.5, y = (0 - 1.5) / 4 * 2 = -0.75
    np.testing.assert_allclose(_point(cloud, labels[0, 5]), [2.5, -0.75, 2.0], rtol=1e-6)
    # pixel (u=0, v=3), z = 1 m: x = (0 - 2.5) / 2 = -1.25, y = (3 - 1.5) / 4 = 0.375
    np.testing.assert_allclose(_point(cloud, labels[3, 0]), [-1.25, 0.375, 1.0], rtol=1e-6)
    # pixel (u=2, v=1), z = 1 m: x = -0.25, y = -0.125
    np.testing.assert_allclose(_point(cloud, labels[1, 2]), [-0.25, -0.125, 1.0], rtol=1e-6)
    assert cloud.xyz.dtype == np.float32 and cloud.label.dtype == np.uint16
    assert cloud.instance.dtype == np.uint32 and cloud.rgb.dtype == np.float32
    assert len(cloud) == 24 and cloud.is_dense and cloud.height == 1


def test_labels_equal_the_label_image_at_the_projected_pixels():
    rng = np.random.default_rng(3)
    h, w = 48, 64
    depth = rng.uniform(0.3, 9.0, (h, w)).astype(np.float32)
    depth[rng.random((h, w)) < 0.1] = np.nan
    labels = rng.integers(0, 19, (h, w)).astype(np.uint8)
    k = np.array([[50.0, 0, 31.2], [0, 52.0, 24.7], [0, 0, 1]])
    cloud = depth_to_cloud(depth, k, labels, config=CloudConfig(max_range=8.0))
    u = np.rint(k[0, 0] * cloud.xyz[:, 0] / cloud.xyz[:, 2] + k[0, 2]).astype(int)
    v = np.rint(k[1, 1] * cloud.xyz[:, 1] / cloud.xyz[:, 2] + k[1, 2]).astype(int)
    np.testing.assert_array_equal(cloud.label, labels[v, u])
    np.testing.assert_allclose(cloud.xyz[:, 2], depth[v, u], rtol=1e-6)
    valid = np.isfinite(depth) & (depth <= 8.0)
    assert len(cloud) == int(valid.sum())
    assert cloud.dropped["invalid_depth"] == int(np.isnan(depth).sum())
    assert cloud.dropped["out_of_range"] == int((depth > 8.0).sum())


def test_millimetres_and_metres_agree():
    depth, labels = small()
    a = depth_to_cloud(depth, K, labels)
    b = depth_to_cloud(depth.astype(np.float32) / 1000, K, labels)
    np.testing.assert_allclose(a.xyz, b.xyz, rtol=1e-6)


def test_invalid_and_out_of_range_depth_dropped_and_counted():
    depth = np.array([[0, 500, 1000, 7000]], np.uint16)
    cfg = CloudConfig(min_range=0.6, max_range=6.0)
    c = depth_to_cloud(depth, K, np.zeros((1, 4), np.uint8), config=cfg)
    assert c.dropped == {"invalid_depth": 1, "out_of_range": 2, "excluded_class": 0}
    np.testing.assert_allclose(c.xyz[:, 2], [1.0])
    # the interval is closed, in millimetres as in metres
    edge = np.array([[599, 600, 6000, 6001]], np.uint16)
    for d in (edge, edge.astype(np.float32) / 1000):
        c = depth_to_cloud(d, K, np.zeros((1, 4), np.uint8), config=cfg)
        np.testing.assert_allclose(c.xyz[:, 2], [0.6, 6.0], rtol=1e-6)
        assert c.dropped["out_of_range"] == 2
    f = np.array([[np.nan, np.inf, -1.0, 2.0]], np.float32)
    c = depth_to_cloud(f, K, np.zeros((1, 4), np.uint8))
    assert c.dropped["invalid_depth"] == 3 and len(c) == 1


def test_stride_classes_and_organized():
    depth, labels = small()
    c = depth_to_cloud(depth, K, labels, config=CloudConfig(stride=2))
    np.testing.assert_array_equal(np.sort(c.label), np.sort(labels[::2, ::2].ravel()))
    np.testing.assert_allclose(_point(c, labels[2, 4]), [(4 - 2.5) / 2, (2 - 1.5) / 4, 1.0], rtol=1e-6)
    c = depth_to_cloud(depth, K, labels, config=CloudConfig(include_classes=frozenset({1, 7, 99})))
    assert sorted(c.label.tolist()) == [1, 7] and c.dropped["excluded_class"] == 22
    depth[1, 1] = 0  # not on the stride-2 grid (rows / columns 0, 2, 4)
    o = depth_to_cloud(depth, K, labels, config=CloudConfig(organized=True, stride=2))
    assert o.xyz.shape == (2, 3, 3) and (o.height, o.width) == (2, 3) and o.is_dense
    np.testing.assert_array_equal(o.label, labels[::2, ::2])
    full = depth_to_cloud(depth, K, labels, config=CloudConfig(organized=True))
    assert not full.is_dense and full.dropped["invalid_depth"] == 1
    assert np.isnan(full.xyz[1, 1]).all() and np.isfinite(np.delete(full.xyz.reshape(-1, 3), 7, 0)).all()
    assert full.label[1, 1] == labels[1, 1]
    np.testing.assert_allclose(full.xyz[0, 5], [2.5, -0.75, 2.0], rtol=1e-6)


def test_label_resolution_differs_from_depth():
    # Color / labels at 8 x 12 with K for that size; depth at 4 x 6. Scaled K (pixel centres):
    # fx = 4 * 0.5 = 2, cx = (5.5 + 0.5) * 0.5 - 0.5 = 2.5, fy = 8 * 0.5 = 4, cy = (3.5 + 0.5) * 0.5 - 0.5 = 1.5
    k_color = np.array([[4.0, 0, 5.5], [0, 8.0, 3.5], [0, 0, 1]])
    np.testing.assert_allclose(scale_intrinsics(k_color, (8, 12), (4, 6)), K)
    depth, _ = small()
    labels = np.repeat(np.repeat(np.arange(24, dtype=np.uint8).reshape(4, 6), 2, 0), 2, 1)
    a = depth_to_cloud(depth, k_color, labels, k_size=(8, 12))
    b = depth_to_cloud(depth, K, np.arange(24, dtype=np.uint8).reshape(4, 6))
    np.testing.assert_array_equal(a.label, b.label)
    np.testing.assert_allclose(a.xyz, b.xyz, rtol=1e-6)


def test_instances_and_colors():
    depth, labels = small()
    pan = labels.astype(np.int32) * 1000
    pan[0, 5] = 13 * 1000 + 4  # a thing
    pan[3, 0] = 255000  # void
    palette = np.zeros((24, 3), np.uint8)
    palette[labels[0, 5]] = (255, 128, 1)
    c = depth_to_cloud(depth, K, labels, panoptic=pan, colors=palette)
    i = int(np.flatnonzero(c.label == labels[0, 5])[0])
    assert c.instance[i] == 13004 and c.instance.sum() == 13004  # stuff and void -> 0
    labels255 = labels.copy()
    labels255[0, 5] = 255  # outside the 24-entry palette: black, not another class's color
    assert depth_to_cloud(depth, K, labels255, colors=palette).rgb[i:i + 1].view(np.uint32)[0] == 0
    assert c.rgb[i:i + 1].view(np.uint32)[0] == 0xFF8001
    img = np.zeros((4, 6, 3), np.uint8)
    img[0, 5] = (1, 2, 3)
    c = depth_to_cloud(depth, K, labels, colors=img)
    assert c.rgb[i:i + 1].view(np.uint32)[0] == 0x010203
    assert pack_rgb(np.array([0, 0, 255], np.uint8)).view(np.uint32) == 255
    # instance colors: the same per-id colors as the ~/colored image (viz.panoptic_id_colors)
    from seg_perception.core.viz import panoptic_id_colors
    palette = np.random.default_rng(0).integers(0, 256, (24, 3)).astype(np.uint8)
    for organized in (False, True):
        c = depth_to_cloud(depth, K, labels, panoptic=pan, colors=palette,
                           config=CloudConfig(color_by="instance", organized=organized))
        expect = pack_rgb(panoptic_id_colors(pan.ravel(), palette)).view(np.uint32)
        np.testing.assert_array_equal(np.sort(c.rgb.ravel().view(np.uint32)), np.sort(expect))
    with pytest.raises(ValueError, match="needs the panoptic ids"):
        depth_to_cloud(depth, K, labels, colors=palette, config=CloudConfig(color_by="instance"))


def test_bad_input_is_named():
    depth, labels = small()
    with pytest.raises(ValueError, match="dtype int32 unsupported"):
        depth_to_cloud(depth.astype(np.int32), K, labels)
    with pytest.raises(ValueError, match="focal lengths"):
        depth_to_cloud(depth, np.zeros((3, 3)), labels)
    with pytest.raises(ValueError, match=r"\[0, 65535\]"):
        depth_to_cloud(depth, K, labels.astype(np.int32) - 1)
    with pytest.raises(ValueError, match="stride"):
        depth_to_cloud(depth, K, labels, config=CloudConfig(stride=0))
    with pytest.raises(ValueError, match="range"):
        depth_to_cloud(depth, K, labels, config=CloudConfig(min_range=3.0, max_range=1.0))

