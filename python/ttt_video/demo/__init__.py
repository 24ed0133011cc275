"""The demo: the tiny bundles the tests run on, and the synthetic world of the demo model.

- ``tiny_bundle``, ``tiny_parts``: tiny random-weight bundles in the real layouts (tests, benchmarks).
- ``world``, ``dataset``: the synthetic one-object world, its storyboards and clips (docs/demo-world.md).
- ``detect``, ``score``: image analysis that scores videos of the world against their storyboards.

Import from the modules (``from ttt_video.demo.world import sample_videos``); this file imports nothing,
so that ``python -m ttt_video.demo.world`` runs its module fresh.
"""
