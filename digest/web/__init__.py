"""The web apps: `public` behind `digest serve` (unsubscribe, sign-up, archive) and `preview`,
the editors' preview on 127.0.0.1. Their pages are the templates beside this file."""

import jinja2
from starlette.templating import Jinja2Templates

# Every value reaches a page (or the Atom feed) escaped, whoever passes it in; a name a
# template uses but nobody passed is a bug to see, not an empty string on a page.
templates = Jinja2Templates(env=jinja2.Environment(
    loader=jinja2.PackageLoader("digest.web"), autoescape=True,
    undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True))
