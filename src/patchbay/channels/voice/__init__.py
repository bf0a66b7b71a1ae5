"""The voice channel (`patchbay channel voice`): phone calls through Twilio, each call one chat;
what callers say (recognised by Twilio, or recorded and transcribed by the speech helper) becomes
a turn, and the answer is spoken back."""
