"""Deterministic generator of a realistic Stash library for the fake server.

Why it looks the way it does
- The mirror must survive what real libraries contain, so the data has the awkward shapes on
  purpose: studio hierarchies 2-3 deep, a tag parent DAG with multiple parents, partial dates
  (``YYYY-MM``/``YYYY``), unicode (accents, CJK, emoji), empty strings next to NULLs, duplicate
  titles and performer names, images without their own performers/tags/studio/date inside galleries
  that have them (so gallery inheritance matters), and bulk imports: runs of hundreds of rows sharing
  one ``updated_at`` second.
- Timestamps are spread from 2019 to the clock's ``now`` and formatted in the server zone (offset
  and DST switches respected), so generated rows are never "in the future" of later mutations.
  The output is a function of ``(seed, clock.now(), zone)``; tests freeze the clock for identity.
- Performance (200k scenes + 1M images must build in well under a minute): per-row work is a
  handful of ``random()`` calls and dict literals; strings come from precomputed pools; timestamp
  strings are interned through a cache; empty relation lists are ONE shared list per process
  (``EMPTY``).  Nobody may mutate an entity's list in place: ``Store`` and ``Mutations`` always
  assign fresh lists.  The cyclic GC is paused while building and the result is ``gc.freeze()``-d
  for big libraries, so later collections do not rescan millions of dicts.
"""

import gc
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from stash_pipeline.fakestash.clock import ServerClock, ServerZone
from stash_pipeline.fakestash.store import Entity, Store

# The exact keys of each entity dict (the same set as ``store.py``'s docstring; a test checks both).
_KEY_TEXT = {
    "scene": (
        "id title code details director urls date rating100 organized o_counter interactive "
        "interactive_speed resume_time play_duration play_count last_played_at play_history "
        "o_history created_at updated_at studio_id performer_ids tag_ids gallery_ids groups "
        "stash_ids files captions"
    ),
    "image": (
        "id title code details photographer urls date rating100 organized o_counter created_at "
        "updated_at studio_id performer_ids tag_ids gallery_ids files"
    ),
    "gallery": (
        "id title code details photographer urls date rating100 organized created_at updated_at "
        "studio_id performer_ids tag_ids cover_image_id folder files chapters"
    ),
    "performer": (
        "id name disambiguation urls gender birthdate death_date ethnicity country eye_color "
        "hair_color height_cm weight measurements fake_tits penis_length circumcised career_length "
        "tattoos piercings alias_list favorite ignore_auto_tag rating100 details image_path "
        "created_at updated_at custom_fields tag_ids stash_ids"
    ),
    "studio": (
        "id name urls aliases details rating100 favorite ignore_auto_tag created_at updated_at "
        "parent_id tag_ids stash_ids image_path"
    ),
    "tag": (
        "id name sort_name description aliases favorite ignore_auto_tag created_at updated_at "
        "parent_ids stash_ids image_path"
    ),
    "group": (
        "id name aliases duration date rating100 director synopsis urls created_at updated_at "
        "studio_id tag_ids containing"
    ),
    "scene_marker": "id scene_id title seconds end_seconds primary_tag_id tag_ids created_at updated_at",
}
ENTITY_KEYS: dict[str, tuple[str, ...]] = {kind: tuple(text.split()) for kind, text in _KEY_TEXT.items()}

LIST_KEYS = frozenset(
    {
        "urls",
        "play_history",
        "o_history",
        "performer_ids",
        "tag_ids",
        "gallery_ids",
        "groups",
        "stash_ids",
        "files",
        "captions",
        "chapters",
        "alias_list",
        "parent_ids",
        "containing",
    }
)
"""Keys holding lists (studio/tag ``aliases`` too; group ``aliases`` is a single string)."""
BOOL_KEYS = frozenset({"organized", "interactive", "favorite", "ignore_auto_tag"})
ZERO_KEYS = {"o_counter": 0, "play_count": 0, "resume_time": 0.0, "play_duration": 0.0}

EMPTY: list[Any] = []
"""The one shared empty list of generated entities: never mutate an entity's list in place."""


def blank_entity(kind: str, entity_id: int, stamp: str) -> Entity:
    """A new entity with Stash's defaults (NULL, empty lists, false, zero counters)."""
    entity: Entity = {}
    for key in ENTITY_KEYS[kind]:
        if key in LIST_KEYS or (key == "aliases" and kind in ("studio", "tag")):
            entity[key] = []
        elif key in BOOL_KEYS:
            entity[key] = False
        elif key in ZERO_KEYS:
            entity[key] = ZERO_KEYS[key]
        elif key == "custom_fields":
            entity[key] = {}
        else:
            entity[key] = None
    entity["id"] = entity_id
    entity["created_at"] = entity["updated_at"] = stamp
    return entity


@dataclass(frozen=True)
class LibrarySize:
    """How many entities of each type; ``None`` means "in proportion to scenes/images"."""

    scenes: int = 2000
    images: int = 10000
    galleries: int | None = None
    performers: int | None = None
    studios: int | None = None
    tags: int | None = None
    groups: int | None = None

    # Minimums so that even a tiny library has every type and the interesting shapes
    # (a 3-deep studio chain needs a few studios, a tag DAG a few dozen tags).
    MIN_GALLERIES = 3
    MIN_PERFORMERS = 12
    MIN_STUDIOS = 8
    MIN_TAGS = 36
    MIN_GROUPS = 4

    def resolved(self) -> "LibrarySize":
        """A copy with every ``None`` replaced by its proportional count."""
        if self.scenes < 0 or self.images < 0:
            raise ValueError("scenes and images must be >= 0")

        def pick(given: int | None, proportional: int, minimum: int) -> int:
            if given is not None:
                if given < 0:
                    raise ValueError("library sizes must be >= 0")
                return given
            return max(proportional, minimum)

        return LibrarySize(
            scenes=self.scenes,
            images=self.images,
            galleries=pick(self.galleries, self.images // 50, self.MIN_GALLERIES),
            performers=pick(self.performers, self.scenes // 20, self.MIN_PERFORMERS),
            studios=pick(self.studios, self.scenes // 200, self.MIN_STUDIOS),
            tags=pick(self.tags, self.scenes // 100, self.MIN_TAGS),
            groups=pick(self.groups, self.scenes // 100, self.MIN_GROUPS),
        )


# ---------------------------------------------------------------------------------------- pools
def _words(text: str) -> list[str]:
    return text.split()


_WORDS = _words(
    "Summer Morning Light City River Garden Night Dream Silver Golden Ocean Forest Winter Echo "
    "Shadow Velvet Harbor Meadow Crystal Storm Sunset Horizon Island Mountain Valley Desert Rain "
    "Thunder Breeze Autumn Spring Midnight Dawn Twilight Coral Amber Jade Scarlet Indigo Ivory "
    "Cobalt Crimson Emerald Lunar Solar Stellar Cosmic Urban Rural Coastal Northern Southern "
    "Eastern Western Hidden Secret Lost Found Wild Quiet Gentle Bright Dark Soft Warm Cold First "
    "Last Open Closed Secret Journey Escape Return Arrival Departure Weekend Holiday Road Trip "
    "Studio Session Portrait Story Chapter Episode Part Scene Moment Memory Letter Window Door "
    "Bridge Tower Station Market Street Avenue Park Lake Beach Cliff Canyon Harbor Lighthouse"
)
_UNICODE_WORDS = (
    "Café",
    "Été",
    "Niño",
    "Zoë",
    "Ångström",
    "Øresund",
    "Łódź",
    "Straße",
    "naïve",
    "Crème Brûlée",
    "São Paulo",
    "Reykjavík",
    "東京",
    "夜景",
    "桜の季節",
    "こんにちは",
    "서울의 밤",
    "Москва",
    "Αθήνα",
    "القاهرة",
    "🔥",
    "✨",
    "🎬",
    "🌊",
    "❤️",
    "👩‍🎤",
)
_TITLE_POOL = tuple(_WORDS * 4) + _UNICODE_WORDS  # ~6% unicode tokens
_COMMON_TITLES = ("Untitled", "Intro", "Behind the Scenes", "Part 1", "Part 2", "Trailer", "Bonus")
_FIRST = _words(
    "Anna Maria Sofia Emma Olivia Mia Lena Clara Julia Laura Nina Eva Sara Lucia Elena Ivy Ruby "
    "Chloe Zoë José Björn Renée Chloé Anaïs Noémie Siobhán Ægir Jürgen Łukasz Dóra Íris Mikael "
    "Liam Noah Lucas Mateo Leo Hugo Felix Oscar Max Adam Jonas Elias Ryo Yuki"
    " 花子 美咲 さくら 지민 Ана Мария Ελένη"
)
_LAST = [
    *_words(
        "Smith Jones Brown Taylor Wilson Martin Garcia Rossi Müller Schmidt Dubois Lefèvre Moreau "
        "García Núñez Peña Kowalski Nowak Novák Horváth Nguyễn Tanaka Suzuki Kim Park Lee Silva "
        "Santos Costa Jensen Hansen Larsen Østergaard Åberg Virtanen O'Brien"
        " 山田 佐藤 김 Иванова Παπαδοπούλου"
    ),
    "",  # a performer known by a single name
]
_DISAMBIGS = ("UK", "US", "II", "1990s", "the elder", "photographer", "née Schmidt", "🇯🇵")
_STUDIO_SUFFIXES = _words(
    "Films Pictures Media Studios Productions Digital Works Entertainment Collective Network "
    "Visuals Cinema Labs"
)
_TAG_NOUNS = _words(
    "Outdoor Indoor Portrait Landscape Close-up Wide Shot Interview Tutorial Travel Food Music "
    "Dance Fitness Yoga Fashion Vintage Retro Night Day Studio Beach Forest Urban Rural Winter "
    "Summer Autumn Spring Rain Snow Sunset Sunrise Drone Handheld Timelapse Slow Motion Monochrome "
    "Colour Cosplay Behind-the-scenes Documentary Comedy Drama Action Romance Mystery Animation"
)
_TAG_ADJS = _words(
    "Classic Modern Amateur Professional Cinematic Natural Artistic Candid Staged Experimental "
    "Minimal Vivid Moody Bright Soft Gritty Dreamy Epic Intimate Playful"
)
_TAG_UNICODE = (
    "Été",
    "Café Culture",
    "Noël",
    "4K ✨",
    "🔥 Trending",
    "日本",
    "夜景",
    "한국어",
    "Русский",
    "Ελληνικά",
    "Ünïcödé",
    "Crème de la crème",
)
_COUNTRIES = ("US", "GB", "DE", "FR", "ES", "IT", "JP", "KR", "BR", "CZ", "HU", "RU", "CA", "AU", None, "")
_ETHNICITIES = ("Caucasian", "Asian", "Latin", "Black", "Mixed", "Middle Eastern", None, None, "")
_EYES = ("Blue", "Brown", "Green", "Grey", "Hazel", None, None)
_HAIR = ("Blonde", "Brunette", "Black", "Red", "Auburn", "Grey", "Various", None)
_GENDERS = (
    ("FEMALE",) * 12
    + ("MALE",) * 5
    + (
        "TRANSGENDER_FEMALE",
        "TRANSGENDER_MALE",
        "NON_BINARY",
        "INTERSEX",
        None,
        None,
    )
)
_VIDEO_RES = ((1920, 1080), (1280, 720), (3840, 2160), (854, 480), (640, 360), (1080, 1920), (2560, 1440))
_IMAGE_RES = ((6000, 4000), (4000, 6000), (1920, 1080), (1080, 1350), (3024, 4032), (800, 600), (2048, 1365))
_FRAME_RATES = (23.976, 24.0, 25.0, 29.97, 30.0, 50.0, 59.94, 60.0)
_VIDEO_FORMATS = (("mp4", "h264", "aac"),) * 5 + (
    ("mkv", "hevc", "opus"),
    ("webm", "vp9", "opus"),
    ("mov", "h264", "aac"),
    ("mp4", "av1", "aac"),
    ("avi", "mpeg4", "mp3"),
    ("wmv", "wmv2", "wmav2"),
    ("mp4", "h264", ""),  # no audio stream: Stash stores an empty codec
)
_IMAGE_FORMATS = (("jpeg", "jpg"),) * 6 + (("png", "png"), ("webp", "webp"), ("gif", "gif"), ("jpeg", "JPG"))
_ENDPOINTS = ("https://stashdb.org/graphql", "https://fansdb.cc/graphql", "https://pmvstash.org/graphql")
_SESSION_SIZES = (1, 1, 1, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000, 3000)
_SESSION_RATES = (0.05, 0.2, 1.0, 3.0, 10.0, 50.0, 200.0, 600.0)  # rows per second of a scan/import
_START_2019 = int(datetime(2019, 1, 1, tzinfo=UTC).timestamp())
_UTC = ServerZone()

# Discrete distributions as lookup tables (index with int(random() * len)).
_SCENE_PERFORMERS = (0,) * 10 + (1,) * 35 + (2,) * 30 + (3,) * 12 + (4,) * 8 + (5,) * 5
_SCENE_TAGS = (0,) * 8 + (1,) * 10 + (2,) * 14 + (3,) * 16 + (4,) * 14 + (5,) * 12 + (6,) * 9
_SCENE_TAGS += (7,) * 7 + (8,) * 5 + (9,) * 3 + (10,) * 2
_SCENE_GALLERIES = (0,) * 75 + (1,) * 20 + (2,) * 5
_SCENE_GROUPS = (0,) * 80 + (1,) * 17 + (2,) * 3
_RATINGS = (None,) * 6 + (20, 40, 60, 80, 100, 50, 70, 90, 10, 85)


def _make_dates() -> tuple[list[str], list[str], list[str]]:
    days, months, years = [], [], []
    for year in range(1995, 2026):
        years.append(f"{year}")
        for month in range(1, 13):
            months.append(f"{year}-{month:02d}")
            for day in range(1, 29 if month == 2 else 31 if month in (4, 6, 9, 11) else 32):
                days.append(f"{year}-{month:02d}-{day:02d}")
    return days, months, years


_DAYS, _MONTHS, _YEARS = _make_dates()


class _Stamper:
    """Epoch → server-local RFC3339 string, interned (many rows share a second)."""

    def __init__(self, zone: ServerZone) -> None:
        self.format = zone.format
        self.cache: dict[int, str] = {}

    def __call__(self, epoch: int) -> str:
        text = self.cache.get(epoch)
        if text is None:
            text = self.cache[epoch] = self.format(epoch)
        return text

    def many(self, epochs: list[int]) -> list[str]:
        cache = self.cache
        get = cache.get
        out = []
        append = out.append
        fmt = self.format
        for epoch in epochs:
            text = get(epoch)
            if text is None:
                text = cache[epoch] = fmt(epoch)
            append(text)
        return out


class _Generator:
    def __init__(self, store: Store, clock: ServerClock, size: LibrarySize, rng: random.Random) -> None:
        self.store = store
        self.size = size
        self.rng = rng
        self.rnd: Callable[[], float] = rng.random
        self.end = int(clock.now())
        self.start = _START_2019 if self.end - _START_2019 > 86400 * 30 else self.end - 86400 * 365 * 5
        self.stamp = _Stamper(clock.zone)
        self.utc = _Stamper(_UTC)
        self.next_file_id = 1
        self.next_folder_id = 1
        self.next_chapter_id = 1
        self.gallery_members: dict[int, list[int]] = {}

    # ------------------------------------------------------------------ helpers
    def chance(self, p: float) -> bool:
        return self.rnd() < p

    def pick(self, seq: tuple[Any, ...] | list[Any]) -> Any:
        return seq[int(self.rnd() * len(seq))]

    def ids(self, k: int, pool: int, skew: float = 1.6) -> list[int]:
        """``k`` distinct ids out of 1..pool, popular (low) ids more likely; EMPTY for none."""
        if k <= 0 or pool <= 0:
            return EMPTY
        rnd = self.rnd
        if k == 1:
            return [1 + int(pool * rnd() ** skew)]
        return list(dict.fromkeys(1 + int(pool * rnd() ** skew) for _ in range(k)))

    def title(self) -> str:
        rnd = self.rnd
        if rnd() < 0.03:
            return self.pick(_COMMON_TITLES)
        pool = _TITLE_POOL
        n = len(pool)
        k = 2 + int(rnd() * 3)
        return " ".join([pool[int(rnd() * n)] for _ in range(k)])

    def opt_text(self, p_set: float, p_empty: float, make: Callable[[], str]) -> str | None:
        r = self.rnd()
        if r < p_set:
            return make()
        if r < p_set + p_empty:
            return ""
        return None

    def date(self, p_set: float) -> str | None:
        r = self.rnd()
        if r >= p_set:
            return None
        r = self.rnd()
        if r < 0.03:
            return self.pick(_YEARS)
        if r < 0.07:
            return self.pick(_MONTHS)
        return self.pick(_DAYS)

    def sentence(self) -> str:
        rnd = self.rnd
        pool = _TITLE_POOL
        n = len(pool)
        return " ".join([pool[int(rnd() * n)] for _ in range(4 + int(rnd() * 12))]) + "."

    def person(self) -> str:
        last = self.pick(_LAST)
        first = self.pick(_FIRST)
        return f"{first} {last}" if last else first

    def uuid(self) -> str:
        h = f"{self.rng.getrandbits(128):032x}"
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{h[16:20]}-{h[20:]}"

    def stash_ids(self, p: float, updated: str) -> list[dict[str, str]]:
        if self.rnd() >= p:
            return EMPTY
        stamp = "1970-01-01T00:00:00Z" if self.chance(0.2) else updated
        return [{"endpoint": self.pick(_ENDPOINTS), "stash_id": self.uuid(), "updated_at": stamp}]

    def folder(
        self,
        path: str,
        parent: dict[str, Any] | None = None,
        zip_file: dict[str, Any] | None = None,
        stamp: str | None = None,
    ) -> dict[str, Any]:
        """A Folder dict (shared by every file in it; nobody mutates it)."""
        stamp = stamp or self.stamp(self.start)
        folder = {
            "id": self.next_folder_id,
            "path": path,
            "parent_folder": parent,
            "zip_file": zip_file,
            "mod_time": stamp,
            "created_at": stamp,
            "updated_at": stamp,
        }
        self.next_folder_id += 1
        return folder

    def timeline(self, n: int) -> tuple[list[str], list[str], list[int]]:
        """Created/updated strings for ``n`` rows in id order, plus the created epochs.

        Rows arrive in scan/import sessions at a given rate (fast imports put hundreds of rows in
        one second); some rows are edited later; a few bulk edits give runs of hundreds of
        consecutive rows one shared ``updated_at``.
        """
        if n == 0:
            return [], [], []
        rng, rnd = self.rng, self.rnd
        start, end = self.start, self.end
        span = end - start
        sizes: list[int] = []
        total = 0
        while total < n:
            s = min(n - total, self.pick(_SESSION_SIZES))
            sizes.append(s)
            total += s
        starts = sorted(start + int(span * rnd()) for _ in sizes)
        created: list[int] = []
        append = created.append
        prev = start
        for s0, count in zip(starts, sizes, strict=True):
            rate = self.pick(_SESSION_RATES)
            for j in range(count):
                t = s0 + int(j / rate)
                if t < prev:
                    t = prev
                if t > end:
                    t = end
                append(t)
                prev = t
        updated = list(created)
        for i in range(n):
            if rnd() < 0.35:
                c = created[i]
                updated[i] = c + int((end - c) * rnd() ** 3)
        if n >= 4:
            runs = max(1, n // 3000)
            for _ in range(runs):
                # Hundreds of rows per bulk edit in real-sized tables, a few in tiny ones.
                length = rng.randint(100, min(800, n // 2)) if n >= 200 else rng.randint(2, max(2, n // 4))
                i0 = rng.randrange(0, n - length + 1)
                lo = created[i0 + length - 1]
                t = lo + int((end - lo) * rnd() ** 2)
                updated[i0 : i0 + length] = [t] * length
        return self.stamp.many(created), self.stamp.many(updated), created

    # ------------------------------------------------------------------ types
    def run(self) -> None:
        self.tags()
        self.studios()
        self.performers()
        self.groups()
        self.galleries()
        self.scenes()
        self.images()
        self.gallery_covers()
        self.scene_markers()

    def scene_markers(self) -> None:
        """About 0.3 markers per scene (0 to 5 on a few of them), at points inside the scene, created
        with or after it.  Primary tags come from a middle band of tag ids, so that tests deleting
        the first or last tags never meet Stash's refusal to delete a marker's primary tag."""
        n_tags = self.size.tags or 0
        if not n_tags:
            return
        rnd, pick = self.rnd, self.pick
        band = range(n_tags // 3 + 1, max(n_tags // 3 + 2, n_tags // 2 + 1))
        insert = self.store.insert
        marker_id = 0
        for scene in list(self.store.tables["scene"].values()):
            if rnd() >= 0.1:
                continue
            length = (scene["files"][0]["duration"] if scene["files"] else 600.0) or 600.0
            for _ in range(1 + int(rnd() * 5)):
                marker_id += 1
                start = round(rnd() * length * 0.9, 3)
                insert(
                    "scene_marker",
                    {
                        "id": marker_id,
                        "scene_id": scene["id"],
                        "title": pick(("", "Intro", "Highlight", "Outro", self.title())),
                        "seconds": start,
                        "end_seconds": round(start + 5 + rnd() * 60, 3) if rnd() < 0.5 else None,
                        "primary_tag_id": pick(band),
                        "tag_ids": self.ids(int(rnd() * 3), n_tags),
                        "created_at": scene["created_at"],
                        "updated_at": scene["created_at"] if rnd() < 0.7 else scene["updated_at"],
                    },
                )

    def tags(self) -> None:
        n = self.size.tags or 0
        rng, chance = self.rng, self.chance
        names = [f"{a} {b}" for a in _TAG_ADJS for b in _TAG_NOUNS] + list(_TAG_NOUNS) + list(_TAG_UNICODE)
        rng.shuffle(names)
        used: set[str] = set()
        created, updated, epochs = self.timeline(n)
        roots = max(3, n // 7)
        insert = self.store.insert
        for i in range(n):
            tid = i + 1
            base = names[i % len(names)]
            name = base if i < len(names) else f"{base} {i // len(names) + 1}"
            while name.casefold() in used:  # tag names are unique (case-insensitive) in Stash
                name += "+"
            used.add(name.casefold())
            parent_ids: list[int] = EMPTY
            if tid > roots:
                r = self.rnd()
                if r < 0.5:
                    parent_ids = [1 + int(self.rnd() * (tid - 1))]
                elif r < 0.62:
                    parent_ids = list(
                        dict.fromkeys(1 + int(self.rnd() * (tid - 1)) for _ in range(2 + int(self.rnd() * 2)))
                    )
            insert(
                "tag",
                {
                    "id": tid,
                    "name": name,
                    "sort_name": (name.lower() if chance(0.5) else "") if chance(0.06) else None,
                    "description": self.opt_text(0.3, 0.05, self.sentence),
                    "aliases": [f"{name} alt", f"{name} ({tid})"][: 1 + int(self.rnd() * 2)]
                    if chance(0.1)
                    else EMPTY,
                    "favorite": chance(0.05),
                    "ignore_auto_tag": chance(0.02),
                    "created_at": created[i],
                    "updated_at": updated[i],
                    "parent_ids": parent_ids,
                    "stash_ids": self.stash_ids(0.05, updated[i]),
                    "image_path": f"/tag/{tid}/image?t={epochs[i]}" if chance(0.3) else None,
                },
            )

    def studios(self) -> None:
        n = self.size.studios or 0
        rng, chance = self.rng, self.chance
        bases = list(_WORDS) + list(_UNICODE_WORDS[:14])
        names = list(dict.fromkeys(f"{b} {s}" for b in bases for s in _STUDIO_SUFFIXES))
        rng.shuffle(names)
        created, updated, epochs = self.timeline(n)
        n_tags = self.size.tags or 0
        depth: list[int] = [0]
        used: set[str] = set()
        tops = max(2, n // 5)
        for i in range(n):
            sid = i + 1
            base = names[i % len(names)]
            name = base if i < len(names) else f"{base} {i // len(names) + 1}"
            while name.casefold() in used:
                name += "+"
            used.add(name.casefold())
            parent_id = None
            d = 1
            if sid > tops and chance(0.6):
                # Parents only among earlier studios (acyclic); at most 3 levels.
                for _ in range(5):
                    cand = 1 + int(self.rnd() * (sid - 1))
                    if depth[cand] < 3:
                        parent_id, d = cand, depth[cand] + 1
                        break
            depth.append(d)
            self.store.insert(
                "studio",
                {
                    "id": sid,
                    "name": name,
                    "urls": [f"https://studio{sid}.example.com/"] if chance(0.7) else EMPTY,
                    "aliases": [name.upper()] if chance(0.1) else EMPTY,
                    "details": self.opt_text(0.4, 0.05, self.sentence),
                    "rating100": self.pick(_RATINGS),
                    "favorite": chance(0.1),
                    "ignore_auto_tag": chance(0.03),
                    "created_at": created[i],
                    "updated_at": updated[i],
                    "parent_id": parent_id,
                    "tag_ids": self.ids(1 + int(self.rnd() * 3), n_tags) if chance(0.3) else EMPTY,
                    "stash_ids": self.stash_ids(0.5, updated[i]),
                    "image_path": f"/studio/{sid}/image?t={epochs[i]}" if chance(0.6) else None,
                },
            )
        self.studio_depth = depth

    def performers(self) -> None:
        n = self.size.performers or 0
        chance, rnd, pick = self.chance, self.rnd, self.pick
        created, updated, epochs = self.timeline(n)
        n_tags = self.size.tags or 0
        taken: set[tuple[str, str | None]] = set()
        earlier: list[str] = []
        for i in range(n):
            pid = i + 1
            # ~4% reuse an earlier name: Stash then requires a distinct disambiguation.
            name = pick(earlier) if earlier and chance(0.04) else self.person()
            if chance(0.01):
                name += " ✨"
            r = rnd()
            disambiguation = None if r < 0.9 else ("" if r < 0.92 else pick(_DISAMBIGS))
            while (name, disambiguation) in taken:  # unique (name, disambiguation), as in Stash
                disambiguation = f"{pick(_DISAMBIGS)} {pid}"
            taken.add((name, disambiguation))
            earlier.append(name)
            gender = pick(_GENDERS)
            male = gender in ("MALE", "TRANSGENDER_FEMALE")
            self.store.insert(
                "performer",
                {
                    "id": pid,
                    "name": name,
                    "disambiguation": disambiguation,
                    "urls": [f"https://social.example.com/p{pid}", f"https://www.example.org/{pid}"][
                        : 1 + int(rnd() * 2)
                    ]
                    if chance(0.6)
                    else EMPTY,
                    "gender": gender,
                    "birthdate": self.date(0.7),
                    "death_date": self.date(1.0) if chance(0.01) else None,
                    "ethnicity": pick(_ETHNICITIES),
                    "country": pick(_COUNTRIES),
                    "eye_color": pick(_EYES),
                    "hair_color": pick(_HAIR),
                    "height_cm": 150 + int(rnd() * 50) if chance(0.7) else None,
                    "weight": 45 + int(rnd() * 60) if chance(0.4) else None,
                    "measurements": f"{80 + int(rnd() * 30)}-{55 + int(rnd() * 20)}-{80 + int(rnd() * 30)}"
                    if chance(0.3)
                    else None,
                    "fake_tits": pick(("Natural", "Augmented", "", None, None)),
                    "penis_length": round(10 + rnd() * 10, 1) if male and chance(0.3) else None,
                    "circumcised": pick(("CUT", "UNCUT")) if male and chance(0.3) else None,
                    "career_length": f"{2005 + int(rnd() * 15)} - {'' if chance(0.5) else 2021}"
                    if chance(0.3)
                    else None,
                    "tattoos": self.opt_text(0.2, 0.05, lambda: "Left arm; small star on ankle"),
                    "piercings": self.opt_text(0.2, 0.05, lambda: "Ears; navel"),
                    "alias_list": list(dict.fromkeys(self.person() for _ in range(1 + int(rnd() * 3))))
                    if chance(0.25)
                    else EMPTY,
                    "favorite": chance(0.1),
                    "ignore_auto_tag": chance(0.03),
                    "rating100": pick(_RATINGS),
                    "details": self.opt_text(0.3, 0.05, self.sentence),
                    "image_path": f"/performer/{pid}/image?t={epochs[i]}" if chance(0.7) else None,
                    "created_at": created[i],
                    "updated_at": updated[i],
                    "custom_fields": {"agency": self.pick(_WORDS), "rank": int(rnd() * 100)}
                    if chance(0.1)
                    else {},
                    "tag_ids": self.ids(1 + int(rnd() * 4), n_tags) if chance(0.5) else EMPTY,
                    "stash_ids": self.stash_ids(0.5, updated[i]),
                },
            )

    def groups(self) -> None:
        n = self.size.groups or 0
        chance, rnd, pick = self.chance, self.rnd, self.pick
        created, updated, _epochs = self.timeline(n)
        n_tags, n_studios = self.size.tags or 0, self.size.studios or 0
        names: list[str] = []
        for i in range(n):
            gid = i + 1
            name = pick(names) if names and chance(0.05) else f"{self.title()} Vol. {1 + int(rnd() * 9)}"
            names.append(name)
            containing: list[tuple[int, str | None]] = EMPTY
            if gid > 1 and chance(0.18):
                # Containing groups only among earlier groups: no cycles.
                parents = dict.fromkeys(1 + int(rnd() * (gid - 1)) for _ in range(1 if chance(0.85) else 2))
                containing = [(p, f"Part {1 + int(rnd() * 5)}" if chance(0.3) else None) for p in parents]
            self.store.insert(
                "group",
                {
                    "id": gid,
                    "name": name,
                    "aliases": self.opt_text(0.1, 0.05, self.title),
                    "duration": 600 + int(rnd() * 10000) if chance(0.4) else None,
                    "date": self.date(0.6),
                    "rating100": pick(_RATINGS),
                    "director": self.opt_text(0.3, 0.03, self.person),
                    "synopsis": self.opt_text(0.4, 0.05, self.sentence),
                    "urls": [f"https://www.example.com/groups/{gid}"] if chance(0.4) else EMPTY,
                    "created_at": created[i],
                    "updated_at": updated[i],
                    "studio_id": 1 + int(rnd() * n_studios) if n_studios and chance(0.7) else None,
                    "tag_ids": self.ids(1 + int(rnd() * 3), n_tags) if chance(0.5) else EMPTY,
                    "containing": containing,
                },
            )

    def galleries(self) -> None:
        n = self.size.galleries or 0
        chance, rnd, pick = self.chance, self.rnd, self.pick
        created, updated, epochs = self.timeline(n)
        n_tags, n_studios, n_perf = self.size.tags or 0, self.size.studios or 0, self.size.performers or 0
        # (folder, zip file dict, path prefix of member image files, shared mod_time) per gallery
        self.gallery_storage: list[tuple[dict[str, Any], dict[str, Any] | None, str, str]] = [
            ({}, None, "", "")
        ]
        root = self.pictures_root = self.folder("/data/pictures")
        for i in range(n):
            gid = i + 1
            title = self.title()
            slug = title.replace(" ", "_")[:40]
            mod_time = self.stamp(epochs[i] - int(rnd() * 86400 * 400))
            r = rnd()
            files: list[dict[str, Any]] = EMPTY
            folder: dict[str, Any] | None = None
            chapters: list[dict[str, Any]] = EMPTY
            if r < 0.6:  # folder-based gallery
                folder = self.folder(f"/data/pictures/{slug}_{gid}", root, None, created[i])
                storage = (folder, None, folder["path"] + "/", mod_time)
            elif r < 0.95:  # zip-based gallery
                fid = self.next_file_id
                self.next_file_id += 1
                zpath = f"/data/pictures/zips/{slug}_{gid}.zip"
                zfile = {
                    "__typename": "GalleryFile",
                    "id": fid,
                    "path": zpath,
                    "basename": f"{slug}_{gid}.zip",
                    "parent_folder": root,
                    "zip_file": None,
                    "mod_time": mod_time,
                    "size": 1_000_000 + int(rnd() * 500_000_000),
                    "fingerprints": [{"type": "md5", "value": f"{self.rng.getrandbits(128):032x}"}],
                    "created_at": created[i],
                    "updated_at": created[i],
                }
                files = [zfile]
                # Members of a zip live in a folder named after the zip, inside the zip file.
                zip_folder = self.folder(zpath, None, zfile, created[i])
                storage = (zip_folder, zfile, zpath + "/", mod_time)
            else:  # virtual gallery made in the UI: no folder, no files
                storage = (root, None, "", mod_time)
            if chance(0.02):
                chapters = []
                for c in range(1 + int(rnd() * 4)):
                    chapters.append(
                        {
                            "id": self.next_chapter_id,
                            "title": f"Chapter {c + 1}",
                            "image_index": 1 + c * 10,
                            "created_at": created[i],
                            "updated_at": created[i],
                        }
                    )
                    self.next_chapter_id += 1
            self.gallery_storage.append(storage)
            self.store.insert(
                "gallery",
                {
                    "id": gid,
                    "title": title
                    if r < 0.95 and chance(0.5)
                    else (title if r >= 0.95 else pick(("", None))),
                    "code": self.opt_text(0.1, 0.05, lambda: f"G-{int(rnd() * 99999):05d}"),
                    "details": self.opt_text(0.2, 0.05, self.sentence),
                    "photographer": self.opt_text(0.2, 0.03, self.person),
                    "urls": [f"https://www.example.com/galleries/{gid}"] if chance(0.3) else EMPTY,
                    "date": self.date(0.7),
                    "rating100": pick(_RATINGS),
                    "organized": chance(0.3),
                    "created_at": created[i],
                    "updated_at": updated[i],
                    "studio_id": 1 + int(rnd() ** 1.3 * n_studios) if n_studios and chance(0.75) else None,
                    "performer_ids": self.ids(1 + int(rnd() * 4), n_perf) if chance(0.8) else EMPTY,
                    "tag_ids": self.ids(int(rnd() * 7), n_tags),
                    "cover_image_id": None,
                    "folder": folder,
                    "files": files,
                    "chapters": chapters,
                },
            )

    def video_file(
        self, folder: dict[str, Any], stem: str, created: str, epoch: int, typename: str = "VideoFile"
    ) -> dict[str, Any]:
        rnd = self.rnd
        fid = self.next_file_id
        self.next_file_id += 1
        ext, vcodec, acodec = self.pick(_VIDEO_FORMATS)
        width, height = self.pick(_VIDEO_RES)
        duration = round(30 + rnd() * 5400, 3)
        bit_rate = 500_000 + int(rnd() * 20_000_000)
        fingerprints = [{"type": "oshash", "value": f"{self.rng.getrandbits(64):016x}"}]
        if rnd() < 0.3:
            fingerprints.append({"type": "md5", "value": f"{self.rng.getrandbits(128):032x}"})
        if rnd() < 0.8:
            fingerprints.append({"type": "phash", "value": f"{self.rng.getrandbits(64):x}"})
        basename = f"{stem}_{fid}.{ext}"
        return {
            "__typename": typename,
            "id": fid,
            "path": f"{folder['path']}/{basename}",
            "basename": basename,
            "parent_folder": folder,
            "zip_file": None,
            "mod_time": self.stamp(epoch - int(rnd() * 86400 * 1000)),
            "size": int(duration * bit_rate / 8),
            "fingerprints": fingerprints,
            "format": ext,
            "width": width,
            "height": height,
            "duration": duration,
            "video_codec": vcodec,
            "audio_codec": acodec,
            "frame_rate": self.pick(_FRAME_RATES),
            "bit_rate": bit_rate,
            "created_at": created,
            "updated_at": created,
        }

    def scenes(self) -> None:
        n = self.size.scenes
        rnd, pick = self.rnd, self.pick
        created, updated, epochs = self.timeline(n)
        n_tags, n_studios, n_perf = self.size.tags or 0, self.size.studios or 0, self.size.performers or 0
        n_gal, n_groups = self.size.galleries or 0, self.size.groups or 0
        folders = [self.folder("/data/videos")]
        folders += [
            self.folder(f"/data/videos/{w}", folders[0]) for w in (*_WORDS[:40], *_UNICODE_WORDS[:12])
        ]
        stems = [w.replace(" ", "_") for w in _TITLE_POOL]
        ids, stamp_utc, insert = self.ids, self.utc, self.store.insert
        for i in range(n):
            sid = i + 1
            epoch, c_at = epochs[i], created[i]
            r = rnd()
            title = self.title() if r < 0.88 else ("" if r < 0.93 else None)
            o_history: list[str] = EMPTY
            play_history: list[str] = EMPTY
            last_played = None
            play_duration = resume_time = 0.0
            if rnd() < 0.2:
                span = self.end - epoch
                o_history = sorted(stamp_utc(epoch + int(span * rnd())) for _ in range(1 + int(rnd() * 5)))
            if rnd() < 0.3:
                span = self.end - epoch
                play_history = sorted(
                    stamp_utc(epoch + int(span * rnd())) for _ in range(1 + int(rnd() * 10))
                )
                last_played = play_history[-1]
                play_duration = round(rnd() * 5000, 2)
                resume_time = round(rnd() * 600, 2) if rnd() < 0.5 else 0.0
            k = _SCENE_GROUPS[int(rnd() * 100)]
            groups: list[tuple[int, int | None]] = EMPTY
            if k and n_groups:
                groups = [(g, 1 + int(rnd() * 20) if rnd() < 0.8 else None) for g in ids(k, n_groups, 1.2)]
            nf = rnd()
            stem = pick(stems)
            if nf < 0.96:
                files = [self.video_file(pick(folders), stem, c_at, epoch)]
            elif nf < 0.99:
                files = [
                    self.video_file(pick(folders), stem, c_at, epoch),
                    self.video_file(pick(folders), stem, c_at, epoch),
                ]
            else:
                files = EMPTY
            interactive = rnd() < 0.02
            insert(
                "scene",
                {
                    "id": sid,
                    "title": title,
                    "code": self.opt_text(0.3, 0.03, lambda: f"SC-{int(rnd() * 9999):04d}"),
                    "details": self.opt_text(0.3, 0.05, self.sentence),
                    "director": self.opt_text(0.2, 0.02, self.person),
                    "urls": [f"https://www.example.com/scenes/{sid}"] if rnd() < 0.4 else EMPTY,
                    "date": self.date(0.8),
                    "rating100": pick(_RATINGS),
                    "organized": rnd() < 0.3,
                    "o_counter": len(o_history),
                    "interactive": interactive,
                    "interactive_speed": 10 + int(rnd() * 90) if interactive and rnd() < 0.7 else None,
                    "resume_time": resume_time,
                    "play_duration": play_duration,
                    "play_count": len(play_history),
                    "last_played_at": last_played,
                    "play_history": play_history,
                    "o_history": o_history,
                    "created_at": c_at,
                    "updated_at": updated[i],
                    "studio_id": 1 + int(rnd() ** 1.5 * n_studios) if n_studios and rnd() < 0.85 else None,
                    "performer_ids": ids(_SCENE_PERFORMERS[int(rnd() * 100)], n_perf),
                    "tag_ids": ids(_SCENE_TAGS[int(rnd() * 100)], n_tags),
                    "gallery_ids": ids(_SCENE_GALLERIES[int(rnd() * 100)], n_gal, 1.0),
                    "groups": groups,
                    "stash_ids": self.stash_ids(0.3, updated[i]),
                    "files": files,
                    "captions": [{"language_code": "en", "caption_type": "srt"}] if rnd() < 0.03 else EMPTY,
                },
            )

    def images(self) -> None:
        n = self.size.images
        chance, rnd, pick = self.chance, self.rnd, self.pick
        getrandbits = self.rng.getrandbits
        created, updated, epochs = self.timeline(n)
        n_tags, n_studios, n_perf = self.size.tags or 0, self.size.studios or 0, self.size.performers or 0
        n_gal = self.size.galleries or 0
        # Membership: ~85% of images in galleries, as contiguous runs in gallery id order (a scan
        # walks folder by folder), interleaved with loose images; ~3% of galleries stay empty.
        gallery_of = [0] * n
        storage = self.gallery_storage
        real = [g for g in range(1, n_gal + 1) if storage[g][2] and not chance(0.03)]
        members_total = int(n * 0.85) if real else 0
        if real and n:
            mean = members_total / len(real)
            sizes = [max(1, int(rng_exp * mean)) for rng_exp in (self.rng.expovariate(1.0) for _ in real)]
            scale = members_total / max(1, sum(sizes))
            sizes = [max(1, int(s * scale)) for s in sizes]
            loose_total = n - min(n, sum(sizes))
            loose_each = loose_total / (len(real) + 1)
            pos = 0
            for g, s in zip(real, sizes, strict=True):
                pos += int(loose_each * 2 * rnd())
                for j in range(pos, min(n, pos + s)):
                    gallery_of[j] = g
                pos += s
                if pos >= n:
                    break
        root = self.folder("/data/pictures/loose", self.pictures_root)
        loose_storage = (root, None, root["path"] + "/", self.stamp(self.start))
        virtual = [g for g in range(1, n_gal + 1) if not storage[g][2]]
        stems = [w.replace(" ", "_") for w in _TITLE_POOL]
        ids, insert = self.ids, self.store.insert
        members = self.gallery_members
        single: dict[int, list[int]] = {}
        for i in range(n):
            iid = i + 1
            gid = gallery_of[i]
            c_at = created[i]
            if gid:
                folder, zip_file, prefix, mod_time = storage[gid]
                gallery_ids = single.get(gid) or single.setdefault(gid, [gid])  # shared, never mutated
                if rnd() < 0.03 and n_gal > 1:  # also in a second gallery (often a virtual one)
                    other = pick(virtual) if virtual and rnd() < 0.7 else 1 + int(rnd() * n_gal)
                    if other != gid:
                        gallery_ids = [gid, other]
                p_own = 0.12
            else:
                folder, zip_file, prefix, mod_time = loose_storage
                gallery_ids = EMPTY
                if virtual and rnd() < 0.05:
                    gallery_ids = [pick(virtual)]
                p_own = 0.45
            for g in gallery_ids:
                members.setdefault(g, []).append(iid)
            fid = self.next_file_id
            self.next_file_id += 1
            fmt, ext = pick(_IMAGE_FORMATS)
            basename = f"{pick(stems)}_{fid:07d}.{ext}"
            if rnd() < 0.01:  # short video clip in the image library: a VideoFile
                file = self.video_file(folder, "clip", c_at, epochs[i])
                file["zip_file"] = zip_file
            else:
                width, height = pick(_IMAGE_RES)
                file = {
                    "__typename": "ImageFile",
                    "id": fid,
                    "path": prefix + basename,
                    "basename": basename,
                    "parent_folder": folder,
                    "zip_file": zip_file,
                    "mod_time": mod_time,
                    "size": 50_000 + int(rnd() * 12_000_000),
                    "fingerprints": [{"type": "md5", "value": f"{getrandbits(128):032x}"}],
                    "format": fmt,
                    "width": width,
                    "height": height,
                    "created_at": c_at,
                    "updated_at": c_at,
                }
            r = rnd()
            insert(
                "image",
                {
                    "id": iid,
                    "title": None if r > p_own else (self.title() if r < p_own * 0.8 else ""),
                    "code": None if rnd() > 0.02 else f"IMG-{iid}",
                    "details": self.sentence() if rnd() < p_own * 0.2 else None,
                    "photographer": self.person() if rnd() < p_own * 0.2 else None,
                    "urls": EMPTY if rnd() > 0.05 else [f"https://www.example.com/images/{iid}"],
                    "date": self.date(p_own),
                    "rating100": None if rnd() > 0.15 else pick(_RATINGS),
                    "organized": rnd() < 0.1,
                    "o_counter": 0 if rnd() > 0.05 else 1 + int(rnd() * 5),
                    "created_at": c_at,
                    "updated_at": updated[i],
                    "studio_id": 1 + int(rnd() * n_studios) if n_studios and rnd() < p_own else None,
                    "performer_ids": ids(1 + int(rnd() * 3), n_perf) if rnd() < p_own * 1.2 else EMPTY,
                    "tag_ids": ids(1 + int(rnd() * 4), n_tags) if rnd() < p_own * 2 else EMPTY,
                    "gallery_ids": gallery_ids,
                    "files": [file],
                },
            )

    def gallery_covers(self) -> None:
        """A user-chosen cover on ~10% of non-empty galleries (a member image)."""
        galleries = self.store.tables["gallery"]
        for gid in sorted(self.gallery_members):
            if self.chance(0.1):
                members = self.gallery_members[gid]
                galleries[gid]["cover_image_id"] = members[int(self.rnd() * len(members))]


def generate(
    store: Store, clock: ServerClock, size: LibrarySize | None = None, seed: int = 0
) -> dict[str, int]:
    """Fill an empty ``store`` with a library of ``size``; deterministic for (seed, clock.now(), zone).

    Returns the per-type counts.
    """
    resolved = (size or LibrarySize()).resolved()
    with store.lock:
        if any(store.tables[kind] for kind in store.tables):
            raise ValueError("generate() needs an empty store")
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            _Generator(store, clock, resolved, random.Random(seed)).run()
        finally:
            if was_enabled:
                gc.enable()
        store.touch()
        if resolved.scenes + resolved.images >= 50_000:
            # Millions of acyclic dicts: keep them out of every future full collection.
            gc.collect()
            gc.freeze()
        return store.counts()


__all__ = ["EMPTY", "ENTITY_KEYS", "LibrarySize", "blank_entity", "generate"]
