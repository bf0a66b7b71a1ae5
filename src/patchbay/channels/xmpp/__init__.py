"""The XMPP channel (`patchbay channel xmpp`); the plugin module is `channel`."""
