"""The foundation every other package builds on: errors, atomic writes, JSON reading, the kinetic terms, the
checkpoint format, process pools and the rules for the files iterdce writes. It imports no other iterdce package.
"""
