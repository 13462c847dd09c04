"""Errors amp-image reports to the operator as one line, with the fix."""


class AmpImageError(Exception):
    """A problem the operator can fix; the message says how."""


class PlanError(AmpImageError):
    """Options that cannot make an image."""


class HostError(AmpImageError):
    """The build or test host lacks something."""


class BuildError(AmpImageError):
    """disk-image-create failed."""


class PublishError(AmpImageError):
    """The image cannot be published as asked."""
