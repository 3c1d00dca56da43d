"""Pictures and procedural scenes the fresh test sets are made from: each takes a seed and returns one RGB uint8
picture. The video family pans over them (models/video/fresh.py, `data.pan_zoom` turns one into a clip); the iqa family
distorts stills of them (models/iqa/holdout.py). Shared, like models.nss, so neither family imports the other."""
import numpy as np


def power_noise(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """[n, n] random field with amplitude spectrum 1/f^exponent (complex Gaussian draws, two per bin): 1.1 for natural
    texture, 1.5 for turbulence, 2 for clouds."""
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(n), np.fft.fftfreq(n)))
    return np.fft.ifft2((rng.normal(size=(n, n)) + 1j * rng.normal(size=(n, n))) / np.maximum(f, 1.0 / n) ** exponent).real


def fractal(seed: int) -> np.ndarray:
    """1/f colour noise: the spectrum of natural texture, no picture behind it."""
    rng = np.random.default_rng(seed)
    n = 512
    out = []
    for _ in range(3):
        x = power_noise(rng, n, 1.1)
        out.append((x - x.mean()) / x.std())
    x = np.stack(out, -1)
    return np.clip(128 + 40 * x, 0, 255).astype(np.uint8)


def cartoon(seed: int) -> np.ndarray:
    """Flat-shaded shapes over a gradient, as in animation."""
    import cv2

    rng = np.random.default_rng(seed)
    n = 512
    ramp = np.linspace(0, 1, n)[None, :, None]
    img = (np.array([60, 120, 200]) * (1 - ramp) + np.array([230, 200, 120]) * ramp).repeat(n, 0).astype(np.uint8).copy()
    for _ in range(40):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        centre = tuple(int(c) for c in rng.integers(0, n, 2))
        if rng.random() < 0.5:
            axes = tuple(int(a) for a in rng.integers(10, 90, 2))
            cv2.ellipse(img, centre, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1, cv2.LINE_AA)
        else:
            side = rng.integers(15, 100, 2)
            cv2.rectangle(img, centre, (int(centre[0] + side[0]), int(centre[1] + side[1])), colour, -1, cv2.LINE_AA)
        if rng.random() < 0.4:
            cv2.circle(img, centre, int(rng.integers(5, 40)), (20, 20, 20), 2, cv2.LINE_AA)
    return img


def text(seed: int) -> np.ndarray:
    """Screen content: lines of words in several fonts and sizes on a light background."""
    import cv2

    rng = np.random.default_rng(seed)
    n = 512
    img = np.full((n, n, 3), 245, np.uint8)
    words = "quality stream encode frame block score model video serve batch signal codec pixel".split()
    fonts = [cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX, cv2.FONT_HERSHEY_TRIPLEX]
    y = 20
    while y < n:
        scale = float(rng.uniform(0.4, 1.1))
        line = " ".join(rng.choice(words, 6))
        colour = tuple(int(c) for c in rng.integers(0, 120, 3))
        cv2.putText(img, line, (6, y), fonts[int(rng.integers(len(fonts)))], scale, colour, 1 + int(scale > 0.8), cv2.LINE_AA)
        y += int(28 * scale + 8)
    return img


def phantom(seed: int) -> np.ndarray:
    """scikit-image's Shepp-Logan phantom with a faint grain, tinted: smooth regions and sharp contours."""
    import skimage.data

    rng = np.random.default_rng(seed)
    x = skimage.data.shepp_logan_phantom() + rng.normal(0, 0.02, (400, 400))
    tint = np.array([0.9, 0.8, 1.0])
    return np.clip(255 * (0.1 + 0.8 * x[..., None] * tint), 0, 255).astype(np.uint8)


def blobs(seed: int) -> np.ndarray:
    """scikit-image's binary blobs, smoothed and coloured: soft edges at many scales."""
    import cv2
    import skimage.data
    from matplotlib import colormaps

    x = skimage.data.binary_blobs(512, blob_size_fraction=0.08, rng=seed).astype(np.float32)
    x = cv2.GaussianBlur(x, (0, 0), 3) * 0.7 + cv2.GaussianBlur(x, (0, 0), 12) * 0.3
    return (colormaps["viridis"](x)[..., :3] * 255).astype(np.uint8)


def picture(name: str):
    def load(_seed: int) -> np.ndarray:
        import skimage.data

        img = getattr(skimage.data, name)()
        if img.shape[-1] == 4:  # logo: composite its alpha over white
            alpha = img[..., 3:] / 255.0
            img = img[..., :3] * alpha + 255 * (1 - alpha)
        return img[..., :3].astype(np.uint8)
    return load


def sample_image(name: str):
    """A picture shipped with scikit-learn or matplotlib (offline)."""
    def load(_seed: int) -> np.ndarray:
        if name in ("china", "flower"):
            from sklearn.datasets import load_sample_image

            return load_sample_image(f"{name}.jpg")
        import matplotlib.cbook
        import matplotlib.image

        img = matplotlib.image.imread(matplotlib.cbook.get_sample_data(name, asfileobj=False))
        img = img if img.dtype == np.uint8 else (np.clip(img, 0, 1) * 255).astype(np.uint8)
        return img[..., :3]
    return load


def terrain(_seed: int) -> np.ndarray:
    """matplotlib's Jacksboro elevation map, hill-shaded in a terrain colour map: natural relief, no camera behind it."""
    import matplotlib.cbook
    from matplotlib import colormaps
    from matplotlib.colors import LightSource

    dem = matplotlib.cbook.get_sample_data("jacksboro_fault_dem.npz")["elevation"].astype(np.float64)
    rgb = LightSource(azdeg=315, altdeg=45).shade(dem, cmap=colormaps["gist_earth"], vert_exag=0.05, blend_mode="overlay")
    return (rgb[..., :3] * 255).astype(np.uint8)


def mri(_seed: int) -> np.ndarray:
    """matplotlib's MRI slice (256x256, 16-bit), windowed to 8 bits: medical greyscale, soft tissue and a dark surround."""
    import matplotlib.cbook

    with matplotlib.cbook.get_sample_data("s1045.ima.gz") as f:
        x = np.frombuffer(f.read(), np.uint16).astype(np.float64).reshape(256, 256)
    x = np.clip(x / np.percentile(x, 99.5), 0, 1) * 255
    return np.stack([x] * 3, -1).astype(np.uint8)


def zoneplate(_seed: int) -> np.ndarray:
    """A circular zone plate: frequency rising from the centre out, the classic aliasing and ringing test chart."""
    n = 512
    r2 = np.add.outer((np.arange(n) - n / 2) ** 2, (np.arange(n) - n / 2) ** 2)
    x = 0.5 + 0.5 * np.cos(np.pi * r2 / (2.2 * n))
    tint = np.array([1.0, 0.85, 0.7])
    return np.clip(255 * (0.1 + 0.8 * x[..., None] * tint), 0, 255).astype(np.uint8)


def checker(seed: int) -> np.ndarray:
    """scikit-image's checkerboard tiled 3x3, each tile tinted: large flat areas and hard edges on a grid."""
    import skimage.data

    rng = np.random.default_rng(seed)
    board = skimage.data.checkerboard().astype(np.float64) / 255
    tiles = [[board[..., None] * rng.uniform(0.3, 1.0, 3) + (1 - board[..., None]) * rng.uniform(0.0, 0.3, 3)
              for _ in range(3)] for _ in range(3)]
    return (np.concatenate([np.concatenate(row, 1) for row in tiles], 0) * 255).astype(np.uint8)


def silhouette(seed: int) -> np.ndarray:
    """scikit-image's horse silhouette on a vertical gradient with film grain: one large shape, grain everywhere."""
    import skimage.data

    rng = np.random.default_rng(seed)
    horse = ~skimage.data.horse()  # True on the horse
    h, w = horse.shape
    ramp = np.linspace(0, 1, h)[:, None, None]
    sky = np.array([250, 190, 120]) * (1 - ramp) + np.array([120, 60, 90]) * ramp
    img = np.where(horse[..., None], np.array([35.0, 25, 30]), np.broadcast_to(sky, (h, w, 3)))
    return np.clip(img + rng.normal(0, 6, (h, w, 1)), 0, 255).astype(np.uint8)


def sky(seed: int) -> np.ndarray:
    """A blue gradient under soft clouds (1/f^2 noise, thresholded smoothly): low-frequency content, where banding shows."""
    rng = np.random.default_rng(seed)
    n = 512
    x = power_noise(rng, n, 2)
    cloud = 1 / (1 + np.exp(-(x - x.mean()) / x.std() * 2.5))
    ramp = np.linspace(0, 1, n)[:, None, None]
    blue = np.array([70, 120, 200]) * (1 - ramp) + np.array([170, 200, 235]) * ramp
    return np.clip(blue * (1 - cloud[..., None]) + 245 * cloud[..., None], 0, 255).astype(np.uint8)


def mandelbrot(_seed: int) -> np.ndarray:
    """A Mandelbrot-set detail, coloured by escape time: filigree at every scale, smooth bands between."""
    from matplotlib import colormaps

    n = 512
    c = np.add.outer(1j * np.linspace(0.085, 0.125, n), np.linspace(-0.765, -0.725, n))  # "seahorse valley"
    z, escape = np.zeros_like(c), np.zeros(c.shape)
    for k in range(120):
        inside = np.abs(z) <= 4
        z[inside] = z[inside] ** 2 + c[inside]
        escape[inside] = k
    return (colormaps["twilight"]((escape % 40) / 40)[..., :3] * 255).astype(np.uint8)


def voronoi(seed: int) -> np.ndarray:
    """Flat-coloured cells with dark borders, as stained glass or a map: large flat areas, many edge angles."""
    import cv2

    rng = np.random.default_rng(seed)
    n = 512
    points = rng.uniform(0, n, (90, 2))
    yy, xx = np.mgrid[:n, :n]
    d = (xx[..., None] - points[:, 0]) ** 2 + (yy[..., None] - points[:, 1]) ** 2
    nearest = np.argsort(d, -1)[..., :2]
    cell = nearest[..., 0]
    gap = np.sqrt(np.take_along_axis(d, nearest[..., 1:], -1)[..., 0]) - np.sqrt(np.take_along_axis(d, nearest[..., :1], -1)[..., 0])
    img = rng.integers(40, 230, (len(points), 3))[cell].astype(np.float64)
    img[gap < 3] = 25
    return cv2.GaussianBlur(img.astype(np.uint8), (0, 0), 0.7)


def marble(seed: int) -> np.ndarray:
    """Veined marble: a sine of a coordinate disturbed by smooth 1/f^1.5 turbulence."""
    rng = np.random.default_rng(seed)
    n = 512
    turb = power_noise(rng, n, 1.5)
    turb = (turb - turb.mean()) / turb.std()
    x = np.abs(np.sin(np.linspace(0, 6 * np.pi, n)[None, :] + 2.5 * turb)) ** 0.5
    base, vein = np.array([235, 228, 215]), np.array([90, 85, 95])
    return (vein + (base - vein) * x[..., None]).astype(np.uint8)


def scoreboard(seed: int) -> np.ndarray:
    """Broadcast sport graphics: a mown pitch with white lines under a score banner with text."""
    import cv2

    rng = np.random.default_rng(seed)
    n = 512
    stripes = ((np.arange(n) // 48) % 2)[None, :, None]
    img = (np.array([40, 120, 45]) + stripes * np.array([12, 25, 10]) + rng.normal(0, 5, (n, n, 1))).clip(0, 255)
    img = np.ascontiguousarray(img.astype(np.uint8))
    cv2.line(img, (256, 0), (256, n), (235, 235, 235), 3)
    cv2.circle(img, (256, 300), 70, (235, 235, 235), 3)
    cv2.rectangle(img, (150, 170), (370, 215), (20, 30, 110), -1)  # inside the window the camera sees
    cv2.putText(img, "HOME 2-1 AWAY", (158, 200), cv2.FONT_HERSHEY_DUPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
    cv2.putText(img, "67:12", (310, 200), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 220, 0), 1, cv2.LINE_AA)
    return img


def topography(_seed: int) -> np.ndarray:
    """matplotlib's small topography / bathymetry grid (91x120) in a colour map: a smooth field, upscaled."""
    import matplotlib.cbook
    from matplotlib import colormaps

    topo = matplotlib.cbook.get_sample_data("topobathy.npz")["topo"].astype(np.float64)
    x = (topo - topo.min()) / (np.ptp(topo) + 1e-9)
    return (colormaps["terrain"](x)[..., :3] * 255).astype(np.uint8)


def plot(seed: int) -> np.ndarray:
    """A chart as a slide or dashboard shows it: thin coloured lines, axes and labels on white."""
    import cv2

    rng = np.random.default_rng(seed)
    n = 512
    img = np.full((n, n, 3), 250, np.uint8)
    cv2.line(img, (50, 460), (490, 460), (30, 30, 30), 2)
    cv2.line(img, (50, 460), (50, 30), (30, 30, 30), 2)
    for k in range(4):
        walk = np.cumsum(rng.normal(0, 6, 220)) + 100 + 80 * k
        pts = np.stack([np.linspace(52, 488, 220), 460 - np.clip(walk, 5, 420)], 1).astype(np.int32)
        cv2.polylines(img, [pts], False, tuple(int(c) for c in rng.integers(0, 200, 3)), 2, cv2.LINE_AA)
    for k, y in enumerate(range(460, 30, -86)):
        cv2.putText(img, str(20 * k), (12, y + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (30, 30, 30), 1, cv2.LINE_AA)
    cv2.putText(img, "requests per second", (180, 500), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (30, 30, 30), 1, cv2.LINE_AA)
    return img


def grain(seed: int) -> np.ndarray:
    """A dim interior lit by one lamp, under heavy film grain: low light, noise everywhere, little structure."""
    rng = np.random.default_rng(seed)
    n = 512
    yy, xx = np.mgrid[:n, :n] / n
    light = np.exp(-((xx - 0.3) ** 2 + (yy - 0.35) ** 2) / 0.08)
    img = np.array([25, 20, 18]) + light[..., None] * np.array([150, 115, 70])
    img[int(0.65 * n):, :] *= 0.6  # a table edge
    return np.clip(img + rng.normal(0, 14, (n, n, 1)) + rng.normal(0, 5, (n, n, 3)), 0, 255).astype(np.uint8)


def weave(seed: int) -> np.ndarray:
    """Woven fabric: two sets of coloured threads crossing over and under, a fine periodic texture with thread noise."""
    rng = np.random.default_rng(seed)
    n, pitch = 512, 6
    yy, xx = np.mgrid[:n, :n]
    over = ((xx // pitch + yy // pitch) % 2).astype(bool)  # plain weave: warp over weft on a checker of crossings
    warp = 0.6 + 0.4 * np.cos(np.pi * ((xx % pitch) / pitch - 0.5)) ** 2
    weft = 0.6 + 0.4 * np.cos(np.pi * ((yy % pitch) / pitch - 0.5)) ** 2
    shade = np.where(over, warp, weft) * (1 + rng.normal(0, 0.04, (n, n)))
    colour = np.where(over[..., None], np.array([170, 40, 50]), np.array([220, 200, 150]))
    return np.clip(colour * shade[..., None], 0, 255).astype(np.uint8)


def foliage(seed: int) -> np.ndarray:
    """Leaves: hundreds of overlapping green ellipses of many shades over dark shadow, as a hedge or tree canopy."""
    import cv2

    rng = np.random.default_rng(seed)
    n = 512
    img = np.ascontiguousarray(np.full((n, n, 3), (20, 35, 15), np.uint8))
    for _ in range(900):
        centre = tuple(int(v) for v in rng.uniform(0, n, 2))
        axes = (int(rng.uniform(6, 16)), int(rng.uniform(3, 7)))
        colour = tuple(int(v) for v in (rng.uniform(20, 90), rng.uniform(80, 200), rng.uniform(10, 70)))
        cv2.ellipse(img, centre, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1, cv2.LINE_AA)
    return img


def ripples(seed: int) -> np.ndarray:
    """Water: interfering ripples from a few centres under a caustic-like brightness, blue-green."""
    rng = np.random.default_rng(seed)
    n = 512
    yy, xx = np.mgrid[:n, :n].astype(np.float64)
    h = sum(np.sin(np.hypot(xx - cx, yy - cy) / rng.uniform(4, 9) + rng.uniform(0, 6)) for cx, cy in rng.uniform(0, n, (5, 2)))
    light = np.clip(0.5 + 0.25 * h, 0, 1) ** 2
    return np.clip(np.array([20, 90, 110]) + light[..., None] * np.array([120, 150, 130]), 0, 255).astype(np.uint8)


def skyline(seed: int) -> np.ndarray:
    """A city at night: dark towers against a dusk gradient, small lit windows on a grid, many of them off."""
    rng = np.random.default_rng(seed)
    n = 512
    ramp = np.linspace(0, 1, n)[:, None, None]
    img = np.broadcast_to(np.array([20, 20, 60]) * (1 - ramp) + np.array([90, 50, 80]) * ramp, (n, n, 3)).copy()
    x = 0
    while x < n:
        w, top = int(rng.uniform(30, 70)), int(rng.uniform(120, 400))
        img[top:, x:x + w] = rng.uniform(10, 30)
        for wy in range(top + 6, n - 4, 10):
            for wx in range(x + 4, min(x + w, n) - 4, 8):
                if rng.random() < 0.45:
                    img[wy:wy + 5, wx:wx + 4] = np.array([255, 220, 140]) * rng.uniform(0.6, 1.0)
        x += w + int(rng.uniform(0, 6))
    return img.astype(np.uint8)


def bokeh(seed: int) -> np.ndarray:
    """Out-of-focus lights: soft, overlapping coloured discs on a dark background, no sharp detail anywhere."""
    import cv2

    rng = np.random.default_rng(seed)
    n = 512
    img = np.zeros((n, n, 3), np.float64)
    for _ in range(70):
        disc = np.zeros((n, n), np.float64)
        cv2.circle(disc, tuple(int(v) for v in rng.uniform(0, n, 2)), int(rng.uniform(12, 40)), 1.0, -1, cv2.LINE_AA)
        img += disc[..., None] * rng.uniform(20, 110, 3)
    return np.clip(cv2.GaussianBlur(img, (0, 0), 2.5) + 12, 0, 255).astype(np.uint8)


def fur(seed: int) -> np.ndarray:
    """Animal fur: thousands of short, thin, nearly parallel strokes in browns, following a slowly turning direction."""
    import cv2

    rng = np.random.default_rng(seed)
    n = 512
    img = np.ascontiguousarray(np.full((n, n, 3), (70, 50, 35), np.uint8))
    for _ in range(9000):
        x, y = rng.uniform(0, n, 2)
        angle = 1.2 + 0.8 * np.sin(x / 90) + 0.5 * np.cos(y / 70) + rng.normal(0, 0.15)
        length = rng.uniform(8, 18)
        end = (int(x + length * np.cos(angle)), int(y + length * np.sin(angle)))
        tone = rng.uniform(0.5, 1.3)
        cv2.line(img, (int(x), int(y)), end, tuple(int(min(255, c * tone)) for c in (150, 110, 70)), 1, cv2.LINE_AA)
    return img


def desktop(seed: int) -> np.ndarray:
    """A screen capture: overlapping windows with title bars, buttons and rows of small text on a flat desktop."""
    import cv2

    rng = np.random.default_rng(seed)
    n = 512
    img = np.ascontiguousarray(np.full((n, n, 3), (40, 90, 130), np.uint8))
    for k in range(4):
        x0, y0 = int(rng.uniform(0, 220)), int(rng.uniform(0, 220))
        x1, y1 = x0 + int(rng.uniform(200, 290)), y0 + int(rng.uniform(180, 280))
        cv2.rectangle(img, (x0, y0), (x1, y1), (245, 245, 245), -1)
        cv2.rectangle(img, (x0, y0), (x1, y0 + 18), (60, 60, 70), -1)
        cv2.putText(img, f"report_{k}.txt - Editor", (x0 + 6, y0 + 13), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (230, 230, 230), 1, cv2.LINE_AA)
        for row, y in enumerate(range(y0 + 34, y1 - 30, 13)):
            words = " ".join("".join(chr(int(c)) for c in rng.integers(97, 123, int(rng.integers(2, 8)))) for _ in range(5))
            cv2.putText(img, words, (x0 + 8, y), cv2.FONT_HERSHEY_PLAIN, 0.7, (20, 20, 20), 1, cv2.LINE_AA)
        cv2.rectangle(img, (x1 - 70, y1 - 24), (x1 - 10, y1 - 8), (70, 130, 200), -1)
        cv2.putText(img, "OK", (x1 - 50, y1 - 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1, cv2.LINE_AA)
    return img


def pixelart(seed: int) -> np.ndarray:
    """Pixel art as games show it: a 64-pixel scene of few colours (sky, hills, blocks, sprites) upscaled x8 with
    nearest neighbour, so every edge is a hard staircase."""
    rng = np.random.default_rng(seed)
    n = 64
    palette = np.array([[92, 148, 252], [0, 168, 0], [200, 76, 12], [252, 188, 176], [0, 0, 0], [252, 252, 252], [136, 112, 0]])
    small = np.zeros((n, n), np.int64)
    hills = (40 + 6 * np.sin(np.arange(n) / 5) + rng.integers(-1, 2, n)).astype(int)
    for x in range(n):
        small[hills[x]:, x] = 1
    small[52:, :] = 2
    small[52::4, :] = 6
    for _ in range(6):
        x, y = rng.integers(0, n - 4), rng.integers(10, 36)
        small[y:y + 3, x:x + 4] = rng.choice([3, 4, 5])
    return np.kron(palette[small], np.ones((8, 8, 1))).astype(np.uint8)


def honeycomb(seed: int) -> np.ndarray:
    """A hexagonal cell grid with shaded rims and tinted centres, as a honeycomb or a game board."""
    rng = np.random.default_rng(seed)
    n, r = 512, 22.0
    yy, xx = np.mgrid[:n, :n].astype(np.float64)
    q = (xx * np.sqrt(3) / 3 - yy / 3) / r
    t = yy * 2 / 3 / r
    cube = np.stack([q, -q - t, t], -1)
    rounded = np.round(cube)
    dist = np.abs(cube - rounded).max(-1)  # 0 at a cell's centre, ~0.5 at its rim
    cell = (rounded[..., 0] * 7 + rounded[..., 2] * 13).astype(np.int64) % 17
    tint = rng.uniform(150, 250, (17, 3)) * np.array([1.0, 0.75, 0.25])
    shade = np.clip(1.2 - 1.6 * dist, 0.2, 1.0)[..., None]
    return np.clip(tint[cell] * shade, 0, 255).astype(np.uint8)


def moire(seed: int) -> np.ndarray:
    """Fine diagonal stripes at two close angles: moire and aliasing, the hardest case for a block transform."""
    n = 512
    yy, xx = np.mgrid[:n, :n].astype(np.float64)
    a = np.sin(2 * np.pi * (xx * np.cos(0.7) + yy * np.sin(0.7)) / 3.1)
    b = np.sin(2 * np.pi * (xx * np.cos(0.78) + yy * np.sin(0.78)) / 3.3)
    x = 0.5 + 0.25 * (a + b)
    return np.clip(np.stack([x * 230, x * 200 + 20, 255 - x * 180], -1), 0, 255).astype(np.uint8)


def wood(seed: int) -> np.ndarray:
    """Wood grain: rings around a distant centre, disturbed by smooth noise, with fine fibre streaks."""
    rng = np.random.default_rng(seed)
    n = 512
    yy, xx = np.mgrid[:n, :n].astype(np.float64)
    turb = power_noise(rng, n, 2)
    rings = np.sin(np.hypot(xx + 900, (yy - 256) * 0.25) / 6 + 3 * turb / turb.std())
    fibre = rng.normal(0, 1, (1, n)).repeat(n, 0) * 0.08
    x = 0.6 + 0.2 * rings + fibre
    return np.clip(x[..., None] * np.array([200, 140, 80]), 0, 255).astype(np.uint8)


def dunes(seed: int) -> np.ndarray:
    """Sand dunes: long smooth ridges lit from one side, with fine grain on the sand."""
    rng = np.random.default_rng(seed)
    n = 512
    yy, xx = np.mgrid[:n, :n].astype(np.float64)
    h = np.sin(xx / 40 + 0.8 * np.sin(yy / 70)) + 0.4 * np.sin(xx / 13 + yy / 29)
    light = 0.65 + 0.3 * np.gradient(h, axis=1) * 8
    x = np.clip(light + rng.normal(0, 0.03, (n, n)), 0, 1.2)
    return np.clip(x[..., None] * np.array([225, 180, 120]), 0, 255).astype(np.uint8)


def circuit(seed: int) -> np.ndarray:
    """A circuit board: green substrate, copper traces at right angles, pads and chips with pin rows."""
    import cv2

    rng = np.random.default_rng(seed)
    n = 512
    img = np.ascontiguousarray(np.full((n, n, 3), (20, 90, 40), np.uint8))
    for _ in range(60):
        x, y = (int(v) for v in rng.integers(0, n, 2))
        for _ in range(4):
            if rng.random() < 0.5:
                x2, y2 = int(np.clip(x + rng.integers(-150, 150), 0, n - 1)), y
            else:
                x2, y2 = x, int(np.clip(y + rng.integers(-150, 150), 0, n - 1))
            cv2.line(img, (x, y), (x2, y2), (190, 150, 60), 2)
            x, y = x2, y2
        cv2.circle(img, (x, y), 4, (210, 200, 170), -1)
    for _ in range(5):
        x, y = (int(v) for v in rng.integers(40, n - 120, 2))
        cv2.rectangle(img, (x, y), (x + 80, y + 40), (25, 25, 25), -1)
        for k in range(x + 4, x + 80, 8):
            cv2.rectangle(img, (k, y - 6), (k + 3, y), (200, 200, 200), -1)
            cv2.rectangle(img, (k, y + 40), (k + 3, y + 46), (200, 200, 200), -1)
    return img


def streetmap(seed: int) -> np.ndarray:
    """A street map: pale blocks between white roads of two widths, a river, a park and small labels."""
    import cv2

    rng = np.random.default_rng(seed)
    n = 512
    img = np.ascontiguousarray(np.full((n, n, 3), (235, 230, 220), np.uint8))
    cv2.ellipse(img, (380, 380), (90, 60), 20, 0, 360, (170, 215, 160), -1)
    cv2.polylines(img, [np.array([[0, 120], [150, 170], [300, 110], [512, 160]], np.int32)], False, (160, 190, 230), 14)
    for k in range(0, n, 48):
        width = 6 if k % 144 == 0 else 2
        cv2.line(img, (k + int(rng.integers(-6, 6)), 0), (k, n), (255, 255, 255), width)
        cv2.line(img, (0, k), (n, k + int(rng.integers(-6, 6))), (255, 255, 255), width)
    for _ in range(14):
        x, y = (int(v) for v in rng.integers(10, n - 60, 2))
        cv2.putText(img, "".join(chr(int(c)) for c in rng.integers(65, 91, 5)) + " St", (x, y), cv2.FONT_HERSHEY_PLAIN, 0.6, (90, 90, 90), 1, cv2.LINE_AA)
    return img


def starfield(seed: int) -> np.ndarray:
    """Stars of many sizes over a faint coloured nebula: point sources on black, the codec's blur shows at once."""
    import cv2

    rng = np.random.default_rng(seed)
    n = 512
    cloud = power_noise(rng, n, 2)
    cloud = np.clip((cloud - cloud.mean()) / cloud.std(), 0, None)
    img = cloud[..., None] * np.array([30.0, 10, 40])
    stars = np.zeros((n, n), np.float64)
    for x, y in rng.integers(0, n, (700, 2)):
        stars[y, x] = rng.pareto(1.5) * 60 + 40
    img += cv2.GaussianBlur(stars, (0, 0), 0.7)[..., None] * np.array([1.0, 0.95, 0.9])
    return np.clip(img, 0, 255).astype(np.uint8)


def mosaic(seed: int) -> np.ndarray:
    """Small square tiles of random colours with grey grout, as a mosaic or a bathroom wall."""
    rng = np.random.default_rng(seed)
    n, tile = 512, 12
    colours = rng.integers(30, 240, (n // tile + 1, n // tile + 1, 3))
    yy, xx = np.mgrid[:n, :n]
    img = colours[yy // tile, xx // tile].astype(np.float64)
    grout = ((yy % tile) < 2) | ((xx % tile) < 2)
    img[grout] = 150
    return img.astype(np.uint8)


def subtitles(seed: int) -> np.ndarray:
    """A dim film frame (a dark room, a window) under two lines of white subtitles with a black outline."""
    import cv2

    rng = np.random.default_rng(seed)
    n = 512
    yy, xx = np.mgrid[:n, :n] / n
    img = (np.array([35, 30, 40]) + np.exp(-((xx - 0.7) ** 2 + (yy - 0.3) ** 2) / 0.02)[..., None] * np.array([120, 130, 150]))
    img = np.ascontiguousarray(np.clip(img + rng.normal(0, 3, (n, n, 1)), 0, 255).astype(np.uint8))
    for y, line in ((290, "Where were you last night?"), (318, "- I told you, at the station.")):
        cv2.putText(img, line, (70, y), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 0, 0), 4, cv2.LINE_AA)
        cv2.putText(img, line, (70, y), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (245, 245, 245), 1, cv2.LINE_AA)
    return img


def halftone(seed: int) -> np.ndarray:
    """Comic-book halftone: a smooth shaded shape printed as dots whose size follows the tone, on paper."""
    import cv2

    n, pitch = 512, 8
    yy, xx = np.mgrid[:n, :n].astype(np.float64)
    tone = np.clip(1 - np.hypot(xx - 200, yy - 230) / 260, 0, 1) * 0.9 + 0.05
    img = np.ascontiguousarray(np.full((n, n, 3), (245, 235, 210), np.uint8))
    for y in range(pitch // 2, n, pitch):
        for x in range(pitch // 2, n, pitch):
            radius = int(round(tone[y, x] * pitch * 0.6))
            if radius:
                cv2.circle(img, (x, y), radius, (200, 40, 60), -1, cv2.LINE_AA)
    return img


def spreadsheet(seed: int) -> np.ndarray:
    """A spreadsheet on screen: a grid of thin lines, right-aligned numbers, a header row and one filled column."""
    import cv2

    rng = np.random.default_rng(seed)
    n = 512
    img = np.ascontiguousarray(np.full((n, n, 3), 255, np.uint8))
    img[:, 128:192] = (220, 240, 255)
    img[:20] = (235, 235, 235)
    for y in range(20, n, 18):
        cv2.line(img, (0, y), (n, y), (205, 205, 205), 1)
        for x in range(0, n, 64):
            if y > 20:
                text = f"{rng.uniform(0, 9999):.2f}"
                cv2.putText(img, text, (x + 58 - 7 * len(text), y + 13), cv2.FONT_HERSHEY_PLAIN, 0.8, (30, 30, 30), 1, cv2.LINE_AA)
    for x in range(0, n, 64):
        cv2.line(img, (x, 0), (x, n), (205, 205, 205), 1)
        cv2.putText(img, chr(65 + x // 64), (x + 28, 14), cv2.FONT_HERSHEY_PLAIN, 0.9, (60, 60, 60), 1, cv2.LINE_AA)
    return img


def spheres(seed: int) -> np.ndarray:
    """Rendered glossy spheres on a floor: smooth Lambert shading, specular highlights, soft shadows, no texture."""
    rng = np.random.default_rng(seed)
    n = 512
    yy, xx = np.mgrid[:n, :n].astype(np.float64)
    img = np.broadcast_to(np.array([180.0, 175, 165]) * (0.6 + 0.4 * yy[..., None] / n), (n, n, 3)).copy()
    light = np.array([-0.5, -0.6, 0.62])
    for _ in range(9):
        cx, cy, r = rng.uniform(60, 450), rng.uniform(60, 450), rng.uniform(25, 70)
        colour = rng.uniform(40, 230, 3)
        shadow = np.exp(-((xx - cx - 0.4 * r) ** 2 + (yy - cy - 0.9 * r) ** 2) / (0.5 * r * r))
        img *= 1 - 0.35 * shadow[..., None]
        dx, dy = (xx - cx) / r, (yy - cy) / r
        inside = dx ** 2 + dy ** 2 < 1
        dz = np.sqrt(np.clip(1 - dx ** 2 - dy ** 2, 0, 1))
        lambert = np.clip(dx * light[0] + dy * light[1] + dz * light[2], 0, 1)
        spec = np.clip(lambert, 0, 1) ** 40 * 255
        img[inside] = (colour * (0.2 + 0.8 * lambert[..., None]) + spec[..., None])[inside]
    return np.clip(img, 0, 255).astype(np.uint8)


def watercolour(seed: int) -> np.ndarray:
    """Watercolour washes: overlapping translucent colour stains with darker dried edges on rough paper."""
    import cv2

    rng = np.random.default_rng(seed)
    n = 512
    img = np.full((n, n, 3), 250.0)
    paper = cv2.GaussianBlur(rng.normal(0, 1, (n, n)), (0, 0), 1.0)
    for _ in range(14):
        mask = np.zeros((n, n), np.float64)
        cv2.circle(mask, tuple(int(v) for v in rng.uniform(0, n, 2)), int(rng.uniform(40, 120)), 1.0, -1)
        mask = cv2.GaussianBlur(mask, (0, 0), rng.uniform(4, 12))
        edge = np.clip(mask * (1 - mask) * 4, 0, 1) ** 2
        pigment = rng.uniform(0.3, 0.9, 3)
        img *= 1 - (0.35 * mask + 0.3 * edge)[..., None] * (1 - pigment)
    return np.clip(img * (1 + 0.03 * paper[..., None]), 0, 255).astype(np.uint8)


def local_picture(filename: str):
    """A picture in scikit-image's bundled data folder that its `data` API does not load (offline); greyscale turned
    to RGB, an alpha channel composited over white."""
    def load(_seed: int) -> np.ndarray:
        import os

        import skimage.data
        import skimage.io

        img = skimage.io.imread(os.path.join(os.path.dirname(skimage.data.__file__), filename))
        img = (img * 255).astype(np.uint8) if img.dtype == bool else img
        if img.ndim == 2:
            img = np.stack([img] * 3, -1)
        if img.shape[-1] == 4:
            alpha = img[..., 3:] / 255.0
            img = img[..., :3] * alpha + 255 * (1 - alpha)
        return img[..., :3].astype(np.uint8)
    return load


def faces(seed: int) -> np.ndarray:
    """A contact sheet of small greyscale crops (scikit-image's LFW subset, 25 pixels each: faces and the background
    patches beside them) on an 8x8 grid."""
    import os

    import skimage.data

    lfw = np.load(os.path.join(os.path.dirname(skimage.data.__file__), "lfw_subset.npy"))
    pick = np.random.default_rng(seed).choice(len(lfw), 64, replace=False)
    sheet = np.block([[lfw[pick[8 * r + c]] for c in range(8)] for r in range(8)])
    return np.stack([np.clip(sheet * 255, 0, 255)] * 3, -1).astype(np.uint8)


def caustics(seed: int) -> np.ndarray:
    """Light caustics on a pool floor: a web of thin bright filaments (where two smooth wave fields cross zero) over
    pale blue tiles."""
    rng = np.random.default_rng(seed)
    n = 512
    web = 0.0
    for _ in range(2):
        h = power_noise(rng, n, 3.0)
        web = np.maximum(web, np.exp(-(h / h.std()) ** 2 * 60))
    grout = (np.arange(n)[:, None] % 48 < 2) | (np.arange(n)[None, :] % 48 < 2)
    x = (0.55 + 0.45 * web) * np.where(grout, 0.85, 1.0)
    return np.clip(x[..., None] * np.array([150, 215, 235]), 0, 255).astype(np.uint8)


def crowd(seed: int) -> np.ndarray:
    """A stadium crowd from afar: rows of small heads and shirts in many colours, the classic worst case for encoders."""
    import cv2

    rng = np.random.default_rng(seed)
    n = 512
    img = np.ascontiguousarray(np.full((n, n, 3), (60, 60, 70), np.uint8))
    for row, y in enumerate(range(8, n, 14)):
        for x in range(int(rng.uniform(0, 10)), n, 11):
            shirt = tuple(int(v) for v in rng.uniform(30, 250, 3))
            cv2.rectangle(img, (x - 4, y + 3), (x + 4, y + 12), shirt, -1)
            cv2.circle(img, (x, y), 3, tuple(int(v) for v in np.array([200, 160, 130]) * rng.uniform(0.4, 1.1)), -1, cv2.LINE_AA)
    return img


def snow(seed: int) -> np.ndarray:
    """Falling snow at night: hundreds of soft white flakes of many sizes over a dark, blurred street."""
    import cv2

    rng = np.random.default_rng(seed)
    n = 512
    street = cv2.GaussianBlur(power_noise(rng, n, 1.6), (0, 0), 4)
    img = np.clip(40 + 25 * street[..., None] / street.std() * np.array([0.8, 0.8, 1.0]), 0, 255)
    flakes = np.zeros((n, n), np.float64)
    for _ in range(700):
        cv2.circle(flakes, tuple(int(v) for v in rng.uniform(0, n, 2)), int(rng.choice([1, 1, 2, 3])), float(rng.uniform(0.4, 1.0)), -1, cv2.LINE_AA)
    flakes = cv2.GaussianBlur(flakes, (0, 0), 0.8)
    return np.clip(img * (1 - flakes[..., None]) + 245 * flakes[..., None], 0, 255).astype(np.uint8)


def banding(seed: int) -> np.ndarray:
    """A smooth two-colour gradient with a faint vignette and nothing else: the content where encoders show banding."""
    rng = np.random.default_rng(seed)
    n = 512
    yy, xx = np.mgrid[:n, :n] / n
    angle = rng.uniform(0, np.pi)
    t = np.clip(0.5 + (xx - 0.5) * np.cos(angle) + (yy - 0.5) * np.sin(angle), 0, 1)[..., None]
    a, b = rng.uniform(20, 120, 3), rng.uniform(120, 230, 3)
    vignette = 1 - 0.25 * ((xx - 0.5) ** 2 + (yy - 0.5) ** 2)[..., None]
    return np.clip((a * (1 - t) + b * t) * vignette, 0, 255).astype(np.uint8)


def qrcodes(seed: int) -> np.ndarray:
    """Matrix barcodes on a poster: random black-and-white module grids with finder squares, hard-edged at 4 pixels."""
    rng = np.random.default_rng(seed)
    n, module = 512, 4
    img = np.full((n, n), 235, np.uint8)
    for y0 in range(12, n - 100, 124):
        for x0 in range(12, n - 100, 124):
            modules = rng.random((25, 25)) < 0.5
            for fy, fx in ((0, 0), (0, 18), (18, 0)):
                modules[fy:fy + 7, fx:fx + 7] = True
                modules[fy + 1:fy + 6, fx + 1:fx + 6] = False
                modules[fy + 2:fy + 5, fx + 2:fx + 5] = True
            img[y0:y0 + 100, x0:x0 + 100] = np.where(np.kron(modules, np.ones((module, module), bool)), 15, 245)
    return np.stack([img] * 3, -1)


def sheetmusic(seed: int) -> np.ndarray:
    """A page of printed music: staves of five thin lines with note heads, stems and bar lines, black on cream."""
    import cv2

    rng = np.random.default_rng(seed)
    n = 512
    img = np.ascontiguousarray(np.full((n, n, 3), (225, 238, 245), np.uint8))
    for top in range(20, n - 50, 62):
        for k in range(5):
            cv2.line(img, (10, top + 7 * k), (n - 10, top + 7 * k), (30, 30, 30), 1)
        for x in range(30, n - 20, int(rng.uniform(18, 26))):
            y = top + int(rng.integers(-2, 11)) * 3.5
            cv2.ellipse(img, (x, int(y)), (4, 3), -20, 0, 360, (20, 20, 20), -1, cv2.LINE_AA)
            cv2.line(img, (x + 4, int(y)), (x + 4, int(y) - 22), (20, 20, 20), 1)
        for x in range(10, n, 120):
            cv2.line(img, (x, top), (x, top + 28), (20, 20, 20), 1)
    return img


def fence(seed: int) -> np.ndarray:
    """A chain-link fence in focus in front of a blurred park: a fine diagonal wire mesh over soft colour."""
    import cv2

    rng = np.random.default_rng(seed)
    n = 512
    park = np.stack([cv2.GaussianBlur(power_noise(rng, n, 1.8), (0, 0), 6) for _ in range(3)], -1)
    park = 110 + 40 * park / park.std() * np.array([0.6, 1.0, 0.5])
    yy, xx = np.mgrid[:n, :n]
    d1, d2 = (xx + yy) % 18, (xx - yy) % 18
    wire = np.clip(1.5 - np.minimum(np.minimum(d1, 18 - d1), np.minimum(d2, 18 - d2)), 0, 1)[..., None]
    return np.clip(park * (1 - wire) + 175 * wire, 0, 255).astype(np.uint8)


def plasma(seed: int) -> np.ndarray:
    """A demoscene plasma: saturated colour bands from summed sines, smooth everywhere and changing hue fast."""
    rng = np.random.default_rng(seed)
    n = 512
    yy, xx = np.mgrid[:n, :n].astype(np.float64)
    f = rng.uniform(20, 60, 4)
    v = (np.sin(xx / f[0]) + np.sin(yy / f[1]) + np.sin((xx + yy) / f[2]) + np.sin(np.hypot(xx - 256, yy - 256) / f[3])) * np.pi / 2
    return np.clip(128 + 127 * np.stack([np.sin(v), np.sin(v + 2.1), np.sin(v + 4.2)], -1), 0, 255).astype(np.uint8)


def hud(seed: int) -> np.ndarray:
    """A game frame: a textured landscape under a heads-up display (health bars, a minimap, an ammo counter, chat text)."""
    import cv2

    rng = np.random.default_rng(seed)
    n = 512
    ground = power_noise(rng, n, 1.3)
    img = np.ascontiguousarray(np.clip(np.array([70, 120, 60]) + 35 * (ground / ground.std())[..., None], 0, 255).astype(np.uint8))
    img[:160] = np.linspace(200, 120, 160)[:, None, None] * np.array([0.55, 0.75, 1.0])
    cv2.rectangle(img, (16, 16), (216, 34), (30, 30, 30), -1)
    cv2.rectangle(img, (18, 18), (18 + int(rng.uniform(60, 196)), 32), (40, 40, 220), -1)
    cv2.rectangle(img, (n - 136, 16), (n - 16, 136), (20, 20, 20), -1)
    for _ in range(12):
        cv2.circle(img, tuple(int(v) for v in rng.uniform([n - 130, 22], [n - 22, 130])), 3, (0, 230, 255), -1)
    cv2.putText(img, f"{int(rng.integers(10, 99))} / 120", (n - 170, n - 24), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (255, 255, 255), 2, cv2.LINE_AA)
    for k in range(5):
        cv2.putText(img, f"player{k}: gg wp {int(rng.integers(100, 999))}", (16, n - 100 + 16 * k), cv2.FONT_HERSHEY_PLAIN, 0.9,
                    (255, 255, 180), 1, cv2.LINE_AA)
    return img


def raindrops(seed: int) -> np.ndarray:
    """Rain on a window: a blurred city behind glass and sharp-rimmed drops that show it brighter and flipped."""
    import cv2

    rng = np.random.default_rng(seed)
    n = 512
    behind = np.stack([cv2.GaussianBlur(power_noise(rng, n, 1.4), (0, 0), 5) for _ in range(3)], -1)
    behind = np.clip(90 + 45 * behind / behind.std() * np.array([1.0, 0.9, 0.7]), 0, 255)
    img = behind.copy()
    for _ in range(160):
        cx, cy, r = int(rng.uniform(0, n)), int(rng.uniform(0, n)), int(rng.uniform(3, 14))
        mask = np.zeros((n, n), np.uint8)
        cv2.circle(mask, (cx, cy), r, 1, -1, cv2.LINE_AA)
        ys, xs = np.nonzero(mask)
        img[ys, xs] = np.clip(behind[np.clip(2 * cy - ys, 0, n - 1), np.clip(2 * cx - xs, 0, n - 1)] * 1.25, 0, 255)
        cv2.circle(img, (cx, cy), r, (40, 40, 40), 1, cv2.LINE_AA)
    return img.astype(np.uint8)


def isobars(seed: int) -> np.ndarray:
    """A weather map: a smooth pressure field in a colour scale, with thin black isobars every few hectopascals."""
    from matplotlib import colormaps

    rng = np.random.default_rng(seed)
    n = 512
    p = power_noise(rng, n, 2.6)
    p = (p - p.min()) / (np.ptp(p) + 1e-9)
    rgb = colormaps["RdYlBu_r"](p)[..., :3] * 255
    levels = p * 24
    line = np.abs(levels - np.round(levels)) < 0.06
    rgb[line] = 20
    return np.clip(rgb, 0, 255).astype(np.uint8)


def bathymetry(_seed: int) -> np.ndarray:
    """matplotlib's topobathy sample (land and sea floor around a coast; a 91 x 120 grid, interpolated to 4x before
    shading so the relief, not the grid, is what is seen), hill-shaded in a terrain colour scale."""
    import cv2
    import matplotlib.cbook
    from matplotlib import colormaps
    from matplotlib.colors import LightSource

    with np.load(matplotlib.cbook.get_sample_data("topobathy.npz", asfileobj=False)) as d:
        z = d["topo"].astype(np.float64)
    z = cv2.resize(z, (z.shape[1] * 4, z.shape[0] * 4), interpolation=cv2.INTER_CUBIC)
    rgb = LightSource(azdeg=315, altdeg=40).shade(z, cmap=colormaps["gist_earth"], blend_mode="soft", vert_exag=0.05)
    return (rgb[..., :3] * 255).astype(np.uint8)


def tartan(seed: int) -> np.ndarray:
    """A plaid: coloured stripes of several widths crossing at right angles, woven as a 2/2 twill (diagonal ribs)."""
    rng = np.random.default_rng(seed)
    n = 512
    palette = rng.uniform(20, 230, (5, 3))
    widths = rng.integers(4, 28, 12)
    sett = np.concatenate([np.full(w, k % 5) for k, w in enumerate(widths)])
    stripe = np.resize(np.concatenate([sett, sett[::-1]]), n)
    yy, xx = np.mgrid[:n, :n]
    warp_on_top = ((xx + yy) // 2) % 2 == 0  # the twill: which thread shows alternates along diagonals
    colour = np.where(warp_on_top[..., None], palette[stripe[xx]], palette[stripe[yy]])
    return np.clip(colour * (0.85 + 0.15 * warp_on_top[..., None]), 0, 255).astype(np.uint8)


def seascape(seed: int) -> np.ndarray:
    """Open sea under a hazy sky: a horizon line, waves whose scale shrinks with distance, glints of sun."""
    import cv2

    rng = np.random.default_rng(seed)
    n = 512
    horizon = int(rng.uniform(150, 230))
    img = np.zeros((n, n, 3))
    img[:horizon] = np.linspace(235, 160, horizon)[:, None, None] * np.array([0.8, 0.9, 1.0])
    waves = power_noise(rng, n, 1.6)
    rows = np.arange(n - horizon)
    depth = (rows + 8.0) / (n - horizon)  # near the horizon the waves are small and squeezed
    src = np.clip((rows[:, None] * 0 + np.arange(n)[None] * depth[:, None]).astype(int), 0, n - 1)
    sea = waves[np.clip((rows * depth).astype(int), 0, n - 1)[:, None], src] / waves.std()
    img[horizon:] = np.array([30, 70, 100]) + 25 * sea[..., None] * depth[:, None, None]
    img[horizon:] += (sea > 1.8)[..., None] * 120
    return np.clip(cv2.GaussianBlur(img, (0, 0), 0.6), 0, 255).astype(np.uint8)


def farmland(seed: int) -> np.ndarray:
    """Fields from the air: a patchwork of polygons, each crop with its own colour and rows at its own angle."""
    import cv2

    rng = np.random.default_rng(seed)
    n = 512
    img = np.zeros((n, n, 3), np.uint8)
    pts = rng.uniform(0, n, (28, 2))
    yy, xx = np.mgrid[:n, :n]
    nearest = np.argmin((xx[..., None] - pts[:, 0]) ** 2 + (yy[..., None] - pts[:, 1]) ** 2, -1)
    for k in range(len(pts)):
        angle, period = rng.uniform(0, np.pi), rng.uniform(4, 12)
        rows = 0.5 + 0.5 * np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)
        base = rng.choice([[70, 120, 40], [160, 150, 70], [110, 80, 50], [60, 100, 60], [190, 180, 110]]) + rng.normal(0, 10, 3)
        mask = nearest == k
        img[mask] = np.clip(base * (0.8 + 0.3 * rows[mask, None]), 0, 255)
    edges = cv2.Canny(nearest.astype(np.uint8) * 9, 1, 2) > 0  # hedges between fields
    img[cv2.dilate(edges.astype(np.uint8), np.ones((2, 2), np.uint8)) > 0] = (40, 60, 30)
    return img


def keyboard(seed: int) -> np.ndarray:
    """A keyboard close up: rows of rounded keycaps with letters, shaded, on a dark frame."""
    import cv2

    rng = np.random.default_rng(seed)
    n = 512
    img = np.full((n, n, 3), 35, np.uint8)
    cap = tuple(int(v) for v in rng.uniform(170, 235, 3))
    letters = "QWERTYUIOPASDFGHJKLZXCVBNM1234567890"
    for r in range(8):
        for c in range(9):
            x0, y0 = 8 + c * 56 + (r % 3) * 9, 8 + r * 62
            cv2.rectangle(img, (x0, y0), (x0 + 48, y0 + 52), tuple(v - 50 for v in cap), -1, cv2.LINE_AA)
            cv2.rectangle(img, (x0 + 4, y0 + 2), (x0 + 44, y0 + 44), cap, -1, cv2.LINE_AA)
            cv2.putText(img, letters[int(rng.integers(len(letters)))], (x0 + 10, y0 + 32), cv2.FONT_HERSHEY_SIMPLEX, 0.9,
                        (40, 40, 40), 2, cv2.LINE_AA)
    return img


def smoke(seed: int) -> np.ndarray:
    """Smoke against a dark backdrop: thin grey wisps (a warped turbulent field), soft-edged, no hard structure."""
    import cv2

    rng = np.random.default_rng(seed)
    n = 512
    field = power_noise(rng, n, 1.7)
    warp_x, warp_y = (cv2.GaussianBlur(power_noise(rng, n, 2.2), (0, 0), 4) for _ in range(2))
    yy, xx = np.mgrid[:n, :n].astype(np.float32)
    scale = 40 / (np.abs(warp_x).max() + 1e-9)
    wisps = cv2.remap((field / field.std()).astype(np.float32), (xx + scale * warp_x).astype(np.float32),
                      (yy + scale * warp_y).astype(np.float32), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    density = np.clip(1.0 - np.abs(wisps) / 1.2, 0, 1) ** 3
    return np.clip(np.array([18, 16, 22]) + 200 * density[..., None] * np.array([1.0, 1.0, 0.95]), 0, 255).astype(np.uint8)


def confetti(seed: int) -> np.ndarray:
    """Confetti on a plain table: hundreds of small saturated rectangles at random angles, some overlapping."""
    import cv2

    rng = np.random.default_rng(seed)
    n = 512
    img = np.full((n, n, 3), tuple(int(v) for v in rng.uniform(200, 245, 3)), np.uint8)
    for _ in range(500):
        centre, size, angle = rng.uniform(0, n, 2), rng.uniform([4, 2], [14, 6]), rng.uniform(0, 180)
        box = cv2.boxPoints((tuple(centre), tuple(size), angle)).astype(np.int32)
        colour = tuple(int(v) for v in rng.choice([[230, 40, 60], [40, 160, 230], [250, 200, 30], [60, 200, 90], [200, 60, 200]]))
        cv2.fillConvexPoly(img, box, colour, cv2.LINE_AA)
    return img


def zebra(seed: int) -> np.ndarray:
    """Zebra hide: black and white stripes that wander and fork (a thresholded warped sine), a little fur noise."""
    import cv2

    rng = np.random.default_rng(seed)
    n = 512
    yy, xx = np.mgrid[:n, :n].astype(np.float32)
    warp = cv2.GaussianBlur(power_noise(rng, n, 2.0).astype(np.float32), (0, 0), 6)
    phase = xx / 14.0 + 40 * warp / (np.abs(warp).max() + 1e-9) + 0.2 * yy / 14.0
    stripes = (np.sin(phase) > 0).astype(np.float32)
    fur = rng.normal(0, 12, (n, n)).astype(np.float32)
    grey = cv2.GaussianBlur(stripes * 215 + 25, (0, 0), 1.0) + fur
    return np.clip(np.stack([grey, grey * 0.97, grey * 0.92], -1), 0, 255).astype(np.uint8)


def bookshelf(seed: int) -> np.ndarray:
    """Shelves of books seen from the front: coloured spines of many widths with thin titles, dark gaps between shelves."""
    import cv2

    rng = np.random.default_rng(seed)
    n = 512
    img = np.full((n, n, 3), (60, 40, 25), np.uint8)
    for top in range(8, n, 128):
        x = 6
        while x < n - 10:
            w, h = int(rng.integers(10, 34)), int(rng.integers(80, 116))
            colour = tuple(int(v) for v in rng.uniform(30, 220, 3))
            cv2.rectangle(img, (x, top + 116 - h), (x + w - 1, top + 116), colour, -1)
            cv2.line(img, (x + w // 2, top + 124 - h), (x + w // 2, top + 108), tuple(255 - c for c in colour), 1, cv2.LINE_AA)
            x += w + int(rng.integers(0, 3))
        img[top + 117:top + 128] = (90, 65, 40)
    return img


def foam(seed: int) -> np.ndarray:
    """Soap foam: packed bubbles of many sizes with bright rims and specular dots on a pale background."""
    import cv2

    rng = np.random.default_rng(seed)
    n = 512
    img = np.full((n, n, 3), 200, np.uint8)
    for _ in range(700):
        cx, cy, r = int(rng.uniform(0, n)), int(rng.uniform(0, n)), int(rng.uniform(4, 28))
        cv2.circle(img, (cx, cy), r, (int(rng.uniform(170, 215)),) * 3, -1, cv2.LINE_AA)
        cv2.circle(img, (cx, cy), r, (250, 250, 255), 1, cv2.LINE_AA)
        cv2.circle(img, (cx - r // 3, cy - r // 3), max(1, r // 6), (255, 255, 255), -1, cv2.LINE_AA)
    return img


def neon(seed: int) -> np.ndarray:
    """Neon signs at night: saturated glowing tubes (words and shapes) with soft halos over a near-black wall."""
    import cv2

    rng = np.random.default_rng(seed)
    n = 512
    tubes = np.zeros((n, n, 3), np.uint8)  # putText draws on 8-bit images only
    for k in range(6):
        colour = tuple(int(v) for v in rng.choice([[255, 40, 160], [40, 220, 255], [255, 200, 40], [120, 255, 80]]))
        org = (int(rng.uniform(10, 300)), int(rng.uniform(60, 500)))
        if k % 2:
            cv2.putText(tubes, rng.choice(["OPEN", "BAR", "24H", "HOTEL", "NOODLES"]), org, cv2.FONT_HERSHEY_SCRIPT_SIMPLEX,
                        2.0, colour, 3, cv2.LINE_AA)
        else:
            cv2.ellipse(tubes, org, (int(rng.uniform(20, 70)), int(rng.uniform(20, 70))), 0, 0, 300, colour, 3, cv2.LINE_AA)
    tubes = tubes.astype(np.float32)
    glow = cv2.GaussianBlur(tubes, (0, 0), 9)
    wall = 12 + 6 * rng.normal(size=(n, n, 1)).astype(np.float32)
    return np.clip(wall + 1.6 * glow + tubes, 0, 255).astype(np.uint8)


def chalkboard(seed: int) -> np.ndarray:
    """A chalkboard: dusty dark green, smudged erasures, and handwritten-looking formulas in rough chalk strokes."""
    import cv2

    rng = np.random.default_rng(seed)
    n = 512
    board = np.array([40, 70, 50], np.float32) + 10 * cv2.GaussianBlur(power_noise(rng, n, 1.8), (0, 0), 8)[..., None]
    chalk = np.zeros((n, n), np.uint8)
    for line in range(9):
        text = "".join(rng.choice(list("xyz=+-()^2abn/dt0123456789"), int(rng.integers(8, 18))))
        cv2.putText(chalk, text, (int(rng.uniform(8, 60)), 48 + 52 * line), cv2.FONT_HERSHEY_SCRIPT_COMPLEX, 1.1, 255, 2, cv2.LINE_AA)
    chalk = chalk / 255.0 * (rng.random((n, n)) > 0.25)  # chalk skips on the board's grain
    return np.clip(board + 185 * chalk[..., None], 0, 255).astype(np.uint8)


def solar(seed: int) -> np.ndarray:
    """Solar panels from above: rows of dark blue cells in a fine silver grid, panels tilted into perspective-free rows,
    grass between the rows."""
    rng = np.random.default_rng(seed)
    n = 512
    yy, xx = np.mgrid[:n, :n]
    img = np.stack([60 + 25 * rng.random((n, n)), 110 + 30 * rng.random((n, n)), 50 + 20 * rng.random((n, n))], -1)
    row_period, panel_h = int(rng.integers(90, 120)), int(rng.integers(60, 80))
    panel = (yy % row_period) < panel_h
    cell = ((xx % 16) < 1) | (((yy % row_period) % 16) < 1)
    img[panel] = (30, 45, 95) + 10 * rng.random((int(panel.sum()), 1))
    img[panel & cell] = (190, 195, 205)
    return np.clip(img, 0, 255).astype(np.uint8)


def leopard(seed: int) -> np.ndarray:
    """Leopard hide: dark broken rings (rosettes) with tawny centres scattered over golden fur with fine hair noise."""
    import cv2

    rng = np.random.default_rng(seed)
    n = 512
    fur = cv2.GaussianBlur(rng.normal(size=(n, n)), (0, 0), 0.8)
    img = np.array([200, 150, 80]) + 18 * (fur / fur.std())[..., None]
    spots = np.zeros((n, n), np.float32)
    for _ in range(110):
        c = tuple(int(v) for v in rng.integers(0, n, 2))
        r = int(rng.integers(9, 20))
        for _ in range(int(rng.integers(3, 6))):  # a ring of 3-5 blotches around a tawny centre
            a = rng.uniform(0, 2 * np.pi)
            cv2.ellipse(spots, (int(c[0] + r * np.cos(a)), int(c[1] + r * np.sin(a))),
                        (int(rng.integers(4, 8)), int(rng.integers(3, 6))), float(np.degrees(a)), 0, 360, 1.0, -1, cv2.LINE_AA)
    spots = cv2.GaussianBlur(spots, (0, 0), 1.0)[..., None]
    return np.clip(img * (1 - 0.8 * spots), 0, 255).astype(np.uint8)


def rust(seed: int) -> np.ndarray:
    """Corroded steel: grey metal eaten by orange-brown rust blotches with pits and flaking edges."""
    import cv2

    rng = np.random.default_rng(seed)
    n = 512
    field = power_noise(rng, n, 1.6)
    field = (field - field.mean()) / field.std()
    grain = rng.normal(size=(n, n))
    rusted = np.clip((field - 0.1) * 3, 0, 1)[..., None]
    metal = np.array([128, 130, 134]) + 10 * grain[..., None]
    oxide = np.array([150, 75, 30]) + 30 * cv2.GaussianBlur(grain, (0, 0), 1.5)[..., None] * np.array([1.0, 0.6, 0.3])
    pits = (rng.random((n, n)) < 0.004 * (1 + 3 * rusted[..., 0]))
    img = metal * (1 - rusted) + oxide * rusted
    img[cv2.dilate(pits.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0] *= 0.35
    return np.clip(img, 0, 255).astype(np.uint8)


def turing(seed: int) -> np.ndarray:
    """A reaction-diffusion (Gray-Scott) pattern, as coral or a brain surface: labyrinths of one width, organic edges."""
    import cv2

    rng = np.random.default_rng(seed)
    n = 192
    u, v = np.ones((n, n)), np.zeros((n, n))
    for _ in range(14):
        y, x = rng.integers(10, n - 10, 2)
        v[y - 4 : y + 4, x - 4 : x + 4] = 0.5
    f, k = 0.029 + 0.003 * rng.random(), 0.057
    for _ in range(3000):
        lap_u = np.roll(u, 1, 0) + np.roll(u, -1, 0) + np.roll(u, 1, 1) + np.roll(u, -1, 1) - 4 * u
        lap_v = np.roll(v, 1, 0) + np.roll(v, -1, 0) + np.roll(v, 1, 1) + np.roll(v, -1, 1) - 4 * v
        uvv = u * v * v
        u += 0.2 * lap_u - uvv + f * (1 - u)
        v += 0.1 * lap_v + uvv - (f + k) * v
    t = cv2.resize(np.clip(v / max(v.max(), 1e-6), 0, 1), (512, 512), interpolation=cv2.INTER_CUBIC)[..., None]
    return np.clip(np.array([235, 120, 90]) * t + np.array([30, 40, 70]) * (1 - t), 0, 255).astype(np.uint8)


def fireworks(seed: int) -> np.ndarray:
    """Fireworks over a dark city sky: bursts of thin bright streaks radiating from a few centres, smoke glow behind."""
    import cv2

    rng = np.random.default_rng(seed)
    n = 512
    img = np.zeros((n, n, 3), np.float32)
    img[:] = np.linspace(10, 35, n)[:, None, None] * np.array([0.5, 0.5, 1.0])
    for _ in range(5):
        c = rng.uniform([80, 60], [n - 80, n - 200])
        colour = rng.uniform(120, 255, 3)
        for a in np.linspace(0, 2 * np.pi, int(rng.integers(30, 60)), endpoint=False):
            r0, r1 = rng.uniform(5, 20), rng.uniform(50, 110)
            p0 = (int(c[0] + r0 * np.cos(a)), int(c[1] + r0 * np.sin(a)))
            p1 = (int(c[0] + r1 * np.cos(a)), int(c[1] + r1 * np.sin(a) + 0.002 * r1 ** 2))  # a little droop
            cv2.line(img, p0, p1, tuple(float(x) for x in colour), 1, cv2.LINE_AA)
            cv2.circle(img, p1, 2, tuple(float(min(255, x + 60)) for x in colour), -1, cv2.LINE_AA)
    img += cv2.GaussianBlur(img, (0, 0), 12) * 0.8  # glow
    img[n - 90 :] = np.clip(img[n - 90 :] * 0.2, 0, 255)  # the dark city line
    return np.clip(img, 0, 255).astype(np.uint8)


def bubbles(seed: int) -> np.ndarray:
    """Soap bubbles before a blurred garden: thin iridescent rims and a white highlight on each, see-through inside."""
    import cv2

    rng = np.random.default_rng(seed)
    n = 512
    garden = np.stack([cv2.GaussianBlur(power_noise(rng, n, 1.5), (0, 0), 9) for _ in range(3)], -1)
    img = (100 + 35 * garden / garden.std() * np.array([0.7, 1.0, 0.6])).astype(np.float32)
    for _ in range(18):
        c = tuple(int(v) for v in rng.integers(30, n - 30, 2))
        r = int(rng.integers(15, 70))
        for i, hue in enumerate(rng.permutation([(255, 120, 200), (120, 220, 255), (255, 230, 120)])):
            cv2.circle(img, c, r - i, tuple(float(h) for h in hue), 1, cv2.LINE_AA)
        cv2.ellipse(img, (c[0] - r // 3, c[1] - r // 3), (max(2, r // 5), max(1, r // 10)), -45, 0, 360, (250, 250, 250), -1, cv2.LINE_AA)
    return np.clip(img, 0, 255).astype(np.uint8)


def road(seed: int) -> np.ndarray:
    """A highway in perspective: asphalt converging to a horizon, dashed lane markings, verges and a hazy sky."""
    rng = np.random.default_rng(seed)
    n = 512
    yy, xx = np.mgrid[:n, :n].astype(np.float64)
    horizon = int(rng.integers(170, 230))
    depth = np.maximum(yy - horizon, 1.0)
    lateral = (xx - n / 2) / depth  # the road's coordinate across, constant along each line to the vanishing point
    distance = 4000.0 / depth  # metres-like distance along the road
    img = np.zeros((n, n, 3))
    img[:] = np.array([120, 140, 60]) + 20 * rng.random((n, n, 1))  # verges
    on_road = np.abs(lateral) < 2.2
    img[on_road] = (np.array([80, 80, 84]) + 14 * rng.normal(size=(int(on_road.sum()), 1)))
    for lane in (-0.75, 0.75):
        dash = on_road & (np.abs(lateral - lane) < 0.04) & ((distance % 12) < 6)
        img[dash] = 235
    img[on_road & (np.abs(np.abs(lateral) - 2.05) < 0.05)] = 225
    img[:horizon] = np.linspace(150, 215, horizon)[:, None, None] * np.array([0.75, 0.85, 1.0])
    return np.clip(img, 0, 255).astype(np.uint8)


def terminal(seed: int) -> np.ndarray:
    """A terminal window: monospace log lines in green and grey on black, a prompt and a block cursor."""
    import cv2

    rng = np.random.default_rng(seed)
    n = 512
    img = np.full((n, n, 3), 12, np.uint8)
    words = "GET POST 200 404 503 ms ok retry worker batch queue INFO WARN ERROR /v2/models infer ready".split()
    for row, y in enumerate(range(18, n - 10, 15)):
        colour = [(90, 220, 90), (170, 170, 170), (240, 200, 90), (230, 90, 90)][int(rng.choice(4, p=[0.5, 0.3, 0.12, 0.08]))]
        line = f"{int(rng.integers(10, 23))}:{int(rng.integers(10, 59))}:{int(rng.integers(10, 59))} " + " ".join(rng.choice(words, 5))
        cv2.putText(img, line, (6, y), cv2.FONT_HERSHEY_PLAIN, 0.95, colour, 1, cv2.LINE_8)
    cv2.rectangle(img, (130, n - 22), (139, n - 8), (90, 220, 90), -1)
    return img


def blueprint(seed: int) -> np.ndarray:
    """An engineering drawing: thin white outlines, circles, hatching and dimension lines on blueprint blue, a faint grid."""
    import cv2

    rng = np.random.default_rng(seed)
    n = 512
    img = np.zeros((n, n, 3), np.uint8)
    img[:] = (150, 80, 20)[::-1]  # RGB of a blueprint blue
    img[::32] = img[:, ::32] = (40, 100, 170)
    white = (235, 240, 250)
    for _ in range(6):
        x, y = (int(v) for v in rng.integers(30, n - 150, 2))
        w, h = (int(v) for v in rng.integers(60, 140, 2))
        cv2.rectangle(img, (x, y), (x + w, y + h), white, 1, cv2.LINE_AA)
        cv2.circle(img, (x + w // 2, y + h // 2), int(min(w, h) // 4), white, 1, cv2.LINE_AA)
        for k in range(0, w, 8):  # hatching in a strip
            cv2.line(img, (x + k, y + h - 12), (x + k + 10, y + h - 2), white, 1, cv2.LINE_AA)
        cv2.line(img, (x, y - 10), (x + w, y - 10), white, 1, cv2.LINE_AA)
        cv2.putText(img, f"{w * 0.5:.1f}", (x + w // 2 - 14, y - 14), cv2.FONT_HERSHEY_PLAIN, 0.8, white, 1, cv2.LINE_AA)
    return img


def maze(seed: int) -> np.ndarray:
    """A printed maze: black walls one cell thick on white, carved by a random depth-first walk (hard edges, no grey)."""
    rng = np.random.default_rng(seed)
    cells, pitch = 32, 16  # 32 x 32 cells of 16 px, walls of 4 px
    walls = np.ones((2 * cells + 1, 2 * cells + 1), bool)
    stack, seen = [(0, 0)], {(0, 0)}
    walls[1, 1] = False
    while stack:
        y, x = stack[-1]
        nxt = [(y + dy, x + dx) for dy, dx in ((0, 1), (1, 0), (0, -1), (-1, 0))
               if 0 <= y + dy < cells and 0 <= x + dx < cells and (y + dy, x + dx) not in seen]
        if not nxt:
            stack.pop()
            continue
        ny, nx = nxt[int(rng.integers(len(nxt)))]
        walls[2 * ny + 1, 2 * nx + 1] = walls[y + ny + 1, x + nx + 1] = False
        seen.add((ny, nx))
        stack.append((ny, nx))
    sizes = np.where(np.arange(2 * cells + 1) % 2 == 0, 4, pitch - 4)  # thin walls, wide corridors
    grid = np.repeat(np.repeat(walls, sizes, 0), sizes, 1)[:512, :512]
    img = np.where(grid[..., None], np.array([25, 25, 30]), np.array([250, 248, 240]))
    return np.pad(img, ((0, 512 - img.shape[0]), (0, 512 - img.shape[1]), (0, 0)), constant_values=250).astype(np.uint8)


def flags(seed: int) -> np.ndarray:
    """A wall of flags: a 4 x 4 grid of flat-colour designs (bands, crosses, a disc), saturated colours, straight edges."""
    import cv2

    rng = np.random.default_rng(seed)
    palette = np.array([(200, 16, 46), (0, 56, 168), (255, 205, 0), (0, 122, 61), (255, 255, 255), (0, 0, 0), (255, 130, 0)])
    img = np.full((512, 512, 3), 225, np.uint8)
    for r in range(4):
        for c in range(4):
            y, x, h, w = 16 + 124 * r, 12 + 126 * c, 100, 112
            a, b, d = palette[rng.choice(len(palette), 3, replace=False)]
            flag = np.empty((h, w, 3), np.uint8)
            kind = int(rng.integers(4))
            if kind == 0:
                flag[:, : w // 3], flag[:, w // 3 : 2 * w // 3], flag[:, 2 * w // 3 :] = a, b, d
            elif kind == 1:
                flag[: h // 3], flag[h // 3 : 2 * h // 3], flag[2 * h // 3 :] = a, b, d
            elif kind == 2:
                flag[:] = a
                flag[h // 2 - 8 : h // 2 + 8] = b
                flag[:, w // 3 - 8 : w // 3 + 8] = b
            else:
                flag[:] = a
                cv2.circle(flag, (w // 2, h // 2), 26, tuple(int(v) for v in b), -1, cv2.LINE_AA)
            img[y : y + h, x : x + w] = flag
    return img


def barchart(seed: int) -> np.ndarray:
    """An infographic: a titled bar chart with value labels, gridlines and a legend, in a brand's flat colours."""
    import cv2

    rng = np.random.default_rng(seed)
    n = 512
    img = np.full((n, n, 3), 250, np.uint8)
    cv2.putText(img, "Requests served by region", (20, 36), cv2.FONT_HERSHEY_DUPLEX, 0.8, (40, 40, 40), 1, cv2.LINE_AA)
    for y in range(120, 461, 68):
        cv2.line(img, (60, y), (n - 20, y), (215, 215, 215), 1)
    colours = [(31, 119, 180), (255, 127, 14), (44, 160, 44)]
    for g in range(6):
        for s in range(3):
            h = int(rng.uniform(40, 330))
            x = 70 + g * 72 + s * 20
            cv2.rectangle(img, (x, 460 - h), (x + 17, 460), colours[s], -1)
            cv2.putText(img, str(h), (x - 2, 455 - h), cv2.FONT_HERSHEY_PLAIN, 0.7, (60, 60, 60), 1, cv2.LINE_AA)
        cv2.putText(img, f"R{g + 1}", (x - 30, 480), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (60, 60, 60), 1, cv2.LINE_AA)
    cv2.line(img, (60, 460), (n - 20, 460), (40, 40, 40), 2)
    return img


def brushed(seed: int) -> np.ndarray:
    """Brushed aluminium: fine horizontal streaks of varying brightness, a broad soft highlight, a few scratches."""
    import cv2

    rng = np.random.default_rng(seed)
    n = 512
    streaks = cv2.GaussianBlur(rng.normal(size=(n, n)), (0, 0), sigmaX=40, sigmaY=0.6)
    streaks /= streaks.std()
    yy, xx = np.mgrid[:n, :n]
    highlight = np.exp(-(((xx + 0.4 * yy) - rng.uniform(150, 350)) / 90.0) ** 2)
    img = 150 + 12 * streaks + 70 * highlight
    for _ in range(6):
        p0, p1 = rng.integers(0, n, 2), rng.integers(0, n, 2)
        cv2.line(img, (int(p0[0]), int(p0[1])), (int(p1[0]), int(p1[1])), 215.0, 1, cv2.LINE_AA)
    return np.clip(np.repeat(img[..., None], 3, -1) * np.array([0.97, 0.99, 1.02]), 0, 255).astype(np.uint8)
