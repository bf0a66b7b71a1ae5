"""The voice channel's settings, from PATCHBAY_CHANNELS__VOICE__* variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from patchbay.channels.base import channel_settings
from patchbay.channels.voice.channel import VoiceChannel, VoiceSettings
from patchbay.config import Settings


def test_how_long_a_redirect_looks_for_a_lost_question_is_a_setting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert VoiceSettings().lost_after_s == 300
    monkeypatch.setenv("PATCHBAY_CHANNELS__VOICE__LOST_AFTER_S", "45")
    raw = Settings(_env_file=None, data_dir=tmp_path).channels["voice"]
    voice = channel_settings(VoiceChannel, raw)
    assert isinstance(voice, VoiceSettings) and voice.lost_after_s == 45
