# Independent scalar re-statement of the update rules torch.optim documents, written
# apart from the C++ code. Its output is pasted as the literal expected values of
# tests/optim_formulas_test.cpp: run `python3 tests/reference/torch_optim_reference.py`.
import math
h = [1.0, 3.0, 0.5]
x0 = [1.0, -2.0, 0.5]
def grad(x): return [hi*xi for hi, xi in zip(h, x)]

def sgd(lr, momentum=0, dampening=0, wd=0, nesterov=False, steps=3):
    x = list(x0); b = None; out = []
    for t in range(steps):
        g = [gi + wd*xi for gi, xi in zip(grad(x), x)]
        if momentum:
            b = list(g) if b is None else [momentum*bi + (1-dampening)*gi for bi, gi in zip(b, g)]
            g = [gi + momentum*bi for gi, bi in zip(g, b)] if nesterov else list(b)
        x = [xi - lr*gi for xi, gi in zip(x, g)]
        out.append(x)
    return out

def adam(lr, b1=0.9, b2=0.999, eps=1e-8, wd=0, amsgrad=False, decoupled=False, lr_of=None, steps=3):
    x = list(x0); m = [0]*3; v = [0]*3; vmax = [0]*3; out = []
    for t in range(1, steps+1):
        a = lr_of(t-1) if lr_of else lr
        g = grad(x)
        if decoupled: x = [xi*(1 - a*wd) for xi in x]
        elif wd: g = [gi + wd*xi for gi, xi in zip(g, x)]
        m = [b1*mi + (1-b1)*gi for mi, gi in zip(m, g)]
        v = [b2*vi + (1-b2)*gi*gi for vi, gi in zip(v, g)]
        bc1 = 1 - b1**t; bc2 = 1 - b2**t
        if amsgrad:
            vmax = [max(a_, b_) for a_, b_ in zip(vmax, v)]; vh = vmax
        else: vh = v
        x = [xi - a/bc1 * mi/(math.sqrt(vi)/math.sqrt(bc2) + eps) for xi, mi, vi in zip(x, m, vh)]
        out.append(x)
    return out

def rmsprop(lr, alpha=0.99, eps=1e-8, wd=0, momentum=0, centered=False, steps=3):
    x = list(x0); v = [0]*3; ga = [0]*3; b = [0]*3; out = []
    for t in range(steps):
        g = [gi + wd*xi for gi, xi in zip(grad(x), x)]
        v = [alpha*vi + (1-alpha)*gi*gi for vi, gi in zip(v, g)]
        if centered:
            ga = [alpha*a + (1-alpha)*gi for a, gi in zip(ga, g)]
            avg = [math.sqrt(vi - a*a) + eps for vi, a in zip(v, ga)]
        else:
            avg = [math.sqrt(vi) + eps for vi in v]
        if momentum:
            b = [momentum*bi + gi/ai for bi, gi, ai in zip(b, g, avg)]
            x = [xi - lr*bi for xi, bi in zip(x, b)]
        else:
            x = [xi - lr*gi/ai for xi, gi, ai in zip(x, g, avg)]
        out.append(x)
    return out

def adagrad(lr, lr_decay=0, wd=0, init=0, eps=1e-10, steps=3):
    x = list(x0); s = [init]*3; out = []
    for t in range(1, steps+1):
        g = [gi + wd*xi for gi, xi in zip(grad(x), x)]
        clr = lr / (1 + (t-1)*lr_decay)
        s = [si + gi*gi for si, gi in zip(s, g)]
        x = [xi - clr*gi/(math.sqrt(si) + eps) for xi, gi, si in zip(x, g, s)]
        out.append(x)
    return out

cases = {
 'sgd_plain': sgd(0.1),
 'sgd_momentum': sgd(0.1, momentum=0.9),
 'sgd_momentum_dampening_wd': sgd(0.1, momentum=0.9, dampening=0.1, wd=0.01),
 'sgd_nesterov_wd': sgd(0.1, momentum=0.9, wd=0.01, nesterov=True),
 'adam_default': adam(0.1),
 'adam_amsgrad_wd': adam(0.5, b2=0.5, wd=0.1, amsgrad=True),
 'adamw': adam(0.1, wd=0.1, decoupled=True),
 'adamw_amsgrad': adam(0.5, b2=0.5, wd=0.1, amsgrad=True, decoupled=True),
 'adam_step_decay': adam(0.1, lr_of=lambda t: 0.1 * 0.5**(t//2)),
 'rmsprop_default': rmsprop(0.01),
 'rmsprop_momentum': rmsprop(0.01, momentum=0.9),
 'rmsprop_centered': rmsprop(0.01, centered=True),
 'rmsprop_centered_momentum_wd': rmsprop(0.01, momentum=0.9, centered=True, wd=0.1),
 'adagrad_all': adagrad(0.1, lr_decay=0.1, wd=0.1, init=0.1),
}
for k, steps in cases.items():
    print(f'// {k}')
    print('{' + ', '.join('{' + ', '.join(repr(v) for v in s) + '}' for s in steps) + '}')
