// What to tell a person when something goes wrong: plainly, and what to do next.

export const BUSY = "patchbay is busy right now; try again in a moment.";

export function explain(error) {
  if (!error) return "Something went wrong; try again.";
  if (error.status === 429 || error.status === 503) return BUSY;
  const message = String(error.message || "Something went wrong; try again.");
  const sentence = message.charAt(0).toUpperCase() + message.slice(1);
  if (error.status === 413) return `That is too large to send. ${sentence}`;
  return sentence;
}

export const isSignedOut = (error) => Boolean(error) && error.status === 401;
