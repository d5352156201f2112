"""The node's parameters as ROS sees them: a ``ParameterDescriptor`` (type, description, range, allowed
values) for each entry of the parameter table (:mod:`perception.ros.nodes.params`)."""

from __future__ import annotations

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType

from perception.ros.nodes.params import ParamSpec


def descriptor(spec: ParamSpec) -> ParameterDescriptor:
    """A ParameterDescriptor (type, description, range, allowed values) for one table entry."""
    d = ParameterDescriptor(description=spec.description, read_only=spec.read_only)
    v = spec.default
    if isinstance(v, bool):
        d.type = ParameterType.PARAMETER_BOOL
    elif isinstance(v, int):
        d.type = ParameterType.PARAMETER_INTEGER
        if spec.min_value is not None and spec.max_value is not None:
            d.integer_range = [IntegerRange(from_value=int(spec.min_value), to_value=int(spec.max_value), step=0)]
    elif isinstance(v, float):
        d.type = ParameterType.PARAMETER_DOUBLE
        if spec.min_value is not None and spec.max_value is not None:
            d.floating_point_range = [
                FloatingPointRange(from_value=float(spec.min_value), to_value=float(spec.max_value), step=0.0)
            ]
    elif isinstance(v, str):
        d.type = ParameterType.PARAMETER_STRING
    elif isinstance(v, tuple):
        d.type = ParameterType.PARAMETER_DOUBLE_ARRAY
    else:
        d.type = ParameterType.PARAMETER_STRING_ARRAY
    if spec.choices:
        d.additional_constraints = "one of: " + ", ".join(spec.choices)
    return d
