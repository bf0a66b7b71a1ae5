"""The Telegram bot channel (`patchbay channel telegram`); the plugin module is `channel`."""
