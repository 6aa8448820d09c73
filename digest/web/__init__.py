"""The web apps: `public` behind `digest serve` (unsubscribe, sign-up, archive) and `preview`,
the editors' preview on 127.0.0.1."""
