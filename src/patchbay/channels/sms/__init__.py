"""The SMS channel (`patchbay channel sms`): Twilio's webhook and a generic JSON one; each text
becomes a turn in the sender's chat and the answer goes back as TwiML or through Twilio's API."""
