"""The one exception a user may see: a mistake of theirs or of the world, never a bug."""


class DigestError(Exception):
    """A problem the user can fix, said in one line naming the thing (file, key, URL, address).

    The command line prints it without a traceback and exits with `status`:
    2 for usage or configuration errors, 1 for work that could not be finished.
    """

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status
