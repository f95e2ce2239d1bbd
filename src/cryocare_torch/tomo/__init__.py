"""The tomography acquisition model shared by the simulator and by prepare: single-axis tilt geometry
(IMOD convention), forward projector, weighted back-projection, IMOD ``.xf`` transforms, and frame sums of
dose-fractionated movies. Pure tensor functions (plus the file-level WBP); nothing here imports a stage."""
